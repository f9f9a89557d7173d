"""bench.paired_speedup: the speedup the speculative benchmark reports against its noise."""
from __future__ import annotations

import pytest

from bench.paired_speedup import PairedSpeedup, paired_speedup, repeat_paired_speedup
from bench.speculative import CONTROL, load_with_drafters


def test_a_configuration_twice_as_fast_on_every_call_is_2x_with_a_tight_interval():
    plain = [[0.02, 0.04, 0.03, 0.05]] * 3
    fast = [[0.01, 0.02, 0.015, 0.025]] * 3

    result = paired_speedup(plain, fast, chunk=2)

    assert result.speedup == pytest.approx(2.0)
    assert result.low == pytest.approx(2.0) and result.high == pytest.approx(2.0)


def test_a_burst_that_slowed_one_repeat_does_not_count():
    plain = [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0], [5.0, 5.0, 5.0, 5.0]]
    same = [[1.0, 1.0, 1.0, 1.0]] * 3

    assert paired_speedup(plain, same, chunk=1).speedup == pytest.approx(1.0)


def test_the_interval_widens_with_call_to_call_spread_and_contains_the_point():
    plain = [[1.0] * 40] * 3
    mixed = [[0.8, 1.25] * 20] * 3  # half the calls faster, half slower

    result = paired_speedup(plain, mixed, chunk=1)

    assert result.low < result.speedup < result.high
    assert result.low < 0.95 < result.high


def test_the_verdict_says_what_the_interval_shows_about_the_5_percent_rule():
    assert PairedSpeedup(0.99, 0.96, 1.02).verdict == "holds"
    assert PairedSpeedup(0.90, 0.88, 0.93).verdict == "broken"
    assert PairedSpeedup(0.96, 0.93, 0.99).verdict == "unresolved"


def test_runs_of_different_calls_are_refused():
    with pytest.raises(ValueError):
        paired_speedup([[1.0, 1.0]], [[1.0]], chunk=1)
    with pytest.raises(ValueError):
        paired_speedup([[1.0, 1.0], [1.0]], [[1.0, 1.0], [1.0, 1.0]], chunk=1)


def test_the_control_spec_runs_plain_greedy_again(tmp_path, monkeypatch):
    import edgeseq
    monkeypatch.setattr(edgeseq, "load", lambda path, **options: f"engine:{path}")

    engine, drafters = load_with_drafters("pkg", [CONTROL, "input"], threads=1)

    assert engine == "engine:pkg"
    assert drafters == [None, "input"]


def test_paired_repeats_take_the_median_ratio_so_one_disturbed_repeat_does_not_count():
    plain = [2.0, 2.0, 2.0, 2.0, 9.0]  # the last repeat's plain run met a burst
    mine = [1.0, 1.0, 1.0, 1.0, 1.0]

    result = repeat_paired_speedup(plain, mine)

    assert result.speedup == pytest.approx(2.0)
    assert result.low == pytest.approx(2.0)  # a resample of mostly the burst is rare


def test_paired_repeats_must_pair_up():
    with pytest.raises(ValueError):
        repeat_paired_speedup([1.0, 1.0], [1.0])


def test_runs_over_single_clips_join_into_one_run_over_all_of_them():
    from bench.whisper_clips import ClipsRun
    first = ClipsRun(["a"], seconds=1.0, audio_s=10.0, decoder_ms=300.0, decoder_passes=20,
                     layers_executed=120, drafted=4, accepted=3)
    second = ClipsRun(["b"], seconds=2.0, audio_s=40.0, decoder_ms=500.0, decoder_passes=60,
                      layers_executed=360, drafted=0, accepted=0)

    whole = ClipsRun.joined([first, second])

    assert whole.texts == ["a", "b"]
    assert (whole.seconds, whole.audio_s, whole.decoder_ms) == (3.0, 50.0, 800.0)
    assert (whole.decoder_passes, whole.layers_executed) == (80, 480)
    assert whole.acceptance == 0.75


@pytest.mark.parametrize("configs, clips", [(2, 2), (4, 2), (3, 2), (2, 1)])
def test_each_whisper_clip_meets_every_configuration_in_every_position(configs, clips):
    from bench.timing import turn_order
    names = [f"config{i}" for i in range(configs)]
    for clip in range(clips):
        orders = [turn_order(names, rep, clip) for rep in range(configs)]
        for position in range(configs):
            assert sorted(order[position] for order in orders) == names


def test_a_whisper_phase_pairs_each_clip_run_with_plain_s_whole_and_decoder_alone(monkeypatch):
    import bench.speculative_whisper as bench_whisper
    from bench.whisper_clips import ClipsRun

    def scripted(engine, clips, options):  # drafting halves the decoder's 1 s of a 3 s run
        decoder_s = 0.5 if options else 1.0
        return ClipsRun(["text"], 2.0 + decoder_s, 10.0, decoder_s * 1e3, 10, 0, 0, 0)
    monkeypatch.setattr(bench_whisper, "transcribe_clips", scripted)
    rows = bench_whisper._phase(None, ["a", "b"], {"plain": {}, "layers": {"draft": "layers"}}, 2)
    layers = rows[1]
    assert PairedSpeedup.from_json(layers["paired"]).speedup == pytest.approx(3.0 / 2.5)
    assert PairedSpeedup.from_json(layers["decoder_paired"]).speedup == pytest.approx(2.0)
    assert layers["decoder_speedup"] == pytest.approx(2.0) and layers["identical"]
