"""bench.speculative_variants: how its rows compare variants of one model."""
from __future__ import annotations

from bench.speculative_variants import summarise


def test_each_mode_is_compared_with_its_own_variants_plain_and_with_the_fastest_plain():
    int8, fp32 = ("int8", 0.0), ("fp32", 1.0)
    times = {(*int8, "plain"): [7.0, 6.0, 8.0], (*int8, "input"): [3.0],
             (*fp32, "plain"): [10.0], (*fp32, "input"): [2.5]}
    outputs = {(*int8, "plain"): [[1], [2]], (*int8, "input"): [[1], [3]],
               (*fp32, "plain"): [[1], [2]], (*fp32, "input"): [[1], [2]]}
    rows = {(r["package"], r["copy_bias"], r["mode"]): r for r in summarise(times, outputs, [int8, fp32])}

    assert rows[(*int8, "plain")]["seconds_median"] == 7.0
    assert rows[(*int8, "input")]["speedup_own_plain"] == 7.0 / 3.0
    assert rows[(*fp32, "input")]["speedup_own_plain"] == 10.0 / 2.5
    # the fastest plain greedy is int8's: fp32's own ratio flatters it against that
    assert rows[(*fp32, "input")]["speedup_fastest_plain"] == 7.0 / 2.5
    assert rows[(*fp32, "plain")]["speedup_fastest_plain"] == 0.7
    assert rows[(*int8, "input")]["identical_to_own_plain"] == 1
    assert rows[(*fp32, "input")]["identical_to_own_plain"] == 2
