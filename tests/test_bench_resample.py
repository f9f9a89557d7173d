"""bench.resample times the generic resampling path against the decimator on one signal
and reports how far their outputs differ."""
import pytest

from bench import resample


def test_compare_reports_both_ways_and_their_difference() -> None:
    row = resample.compare(48000, seconds=0.5, repeats=2)
    assert row["generic_ms"] > 0 and row["decimator_ms"] > 0
    assert row["speedup"] == pytest.approx(row["generic_ms"] / row["decimator_ms"])
    assert row["max_abs_diff"] < 2e-6


def test_a_rate_the_decimator_does_not_serve_is_refused() -> None:
    with pytest.raises(SystemExit, match="multiples of 16000"):
        resample.compare(44100, seconds=0.1, repeats=1)
