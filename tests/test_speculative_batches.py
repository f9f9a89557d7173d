"""Speculating batches: rows decoded together (lockstep) or one after another, as the
measured schedule (runtime/batching.py) picks, always with plain greedy's tokens."""
from __future__ import annotations

import pytest

import edgeseq
from edgeseq.errors import OptionsError
from scripted_drafter import SOURCES


@pytest.fixture(scope="module")
def engines(tiny_package):
    return {case: edgeseq.load(str(tiny_package(*case)[0]), threads=1,
                               fp32_decoder_products=False)
            for case in (("t5", "int8"), ("marian", "int8"))}


def test_batched_speculation_equals_one_by_one(engines):
    engine = engines["marian", "int8"]
    batch = engine.generate(SOURCES, max_new_tokens=14, draft="input")
    assert [r.token_ids for r in batch] == [engine.generate(s, max_new_tokens=14).token_ids
                                           for s in SOURCES]


def test_speculating_row_by_row_equals_lockstep_and_each_row_keeps_its_own_figures(engines):
    engine = engines["t5", "int8"]
    kw = dict(max_new_tokens=14, draft="input", adaptive_draft=False)  # lengths: no timing
    lockstep = engine.generate(SOURCES, speculate_rows=False, **kw)
    rows = engine.generate(SOURCES, speculate_rows=True, **kw)
    assert [r.token_ids for r in rows] == [r.token_ids for r in lockstep]
    # each row's passes are its own: they add up to the call's, none is the batch's
    passes = [r.stats.speculation["verify_passes"] for r in rows]
    assert passes == [engine.generate(s, **kw).stats.speculation["verify_passes"] for s in SOURCES]
    with pytest.raises(OptionsError, match="speculate_rows applies with draft="):
        engine.generate(SOURCES, speculate_rows=False)


def _decode_chunks(schedule, speed: dict[bool, float], chunks: int) -> list[bool]:
    """Chunks of 8 rows, 800 tokens each, decoded the way the schedule picks at the
    tokens/s of `speed` (True: one row after another); the ways taken."""
    ways = []
    for _ in range(chunks):
        ways.append(schedule.rows_alone())
        schedule.record(ways[-1], tokens=800, seconds=800 / speed[ways[-1]], rows=8)
    return ways


def test_a_speculating_batch_goes_the_way_measured_faster_and_rechecks_the_other():
    from edgeseq.runtime.batching import EXPLORE_EVERY, BatchSchedule
    schedule = BatchSchedule(batch=8)
    speed = {True: 1000.0, False: 800.0}   # tokens/s one after another, together

    def run(chunks: int) -> list[bool]:
        return _decode_chunks(schedule, speed, chunks)
    # each way twice (the first chunk after a switch only warms up), one after another first
    assert run(4) == [True, True, False, False]
    ways = run(2 * EXPLORE_EVERY)
    assert ways.count(False) == 2 * 2        # two re-checks of lockstep, each warmed up first
    speed[True] = 200.0                      # the inputs change: rows alone slow down
    run(EXPLORE_EVERY + 8)
    assert run(8) == [False] * 8


def test_a_far_slower_way_is_rechecked_less_and_less_often():
    from edgeseq.runtime.batching import EXPLORE_EVERY, EXPLORE_MOST, BatchSchedule
    schedule = BatchSchedule(batch=8)
    speed = {True: 500.0, False: 1000.0}   # one after another at half of lockstep's speed

    def run(chunks: int) -> list[bool]:
        return _decode_chunks(schedule, speed, chunks)
    ways = run(40 * EXPLORE_EVERY)
    rechecks = [i for i in range(ways.index(False) + 1, len(ways)) if ways[i] and not ways[i - 1]]
    gaps = [b - a for a, b in zip(rechecks, rechecks[1:])]
    assert gaps == sorted(gaps) and gaps[-1] > 4 * EXPLORE_EVERY  # backing off
    assert schedule.gap <= EXPLORE_MOST
    speed[True] = 2000.0  # the inputs change: one after another is now faster
    run(schedule.gap + 3 * EXPLORE_EVERY)
    assert run(8) == [True] * 8  # found at the next re-check, and kept
    # rows one after another pay only through their own drafts: not while those are off
    assert not any(schedule.rows_alone(may_pay=False) for _ in range(2 * EXPLORE_MOST))


def test_one_row_after_another_measured_past_its_first_row_costs_one_chunk_per_recheck():
    from edgeseq.runtime.batching import EXPLORE_EVERY, BatchSchedule
    schedule = BatchSchedule(batch=8)
    speed = {True: 600.0, False: 1000.0}  # one after another at 0.6x lockstep's speed
    ways = []
    for _ in range(3 * EXPLORE_EVERY):
        ways.append(schedule.rows_alone())
        # the engine times rows 2-8 of a chunk decoded one after another (the first warms up)
        schedule.record(ways[-1], tokens=800, seconds=800 / speed[ways[-1]], rows=8,
                        warm=ways[-1])

    assert ways[:4] == [True, False, False, False]  # measured in one chunk, then lockstep
    rechecks = [i for i in range(1, len(ways)) if ways[i] and not ways[i - 1]]
    assert rechecks and all(not ways[i + 1] for i in rechecks)  # each a single chunk


def test_a_batch_is_timed_one_row_after_another_then_together(tiny_package):
    engine = edgeseq.load(str(tiny_package("t5", "int8")[0]), threads=1)  # no figures yet
    kw = dict(max_new_tokens=10, draft="input")
    calls = [engine.generate(SOURCES, **kw) for _ in range(4)]
    # 3: each row decoded on its own (measured past the first row, which warms up), then
    # 1: the rows together (their first chunk warms up, the next is measured)
    assert [len({id(r.stats) for r in results}) for results in calls] == [3, 1, 1, 1]
    plain = [engine.generate(s, max_new_tokens=10).token_ids for s in SOURCES]
    assert all([r.token_ids for r in results] == plain for results in calls)


def test_speculating_row_by_row_plans_the_memory_of_one_row(engines):
    engine = engines["t5", "int8"]
    rows = engine.generate(SOURCES, max_new_tokens=8, draft="input", speculate_rows=True,
                           memory_budget_mb=10_000)
    assert rows[0].stats.memory_plan["request"]["batch"] == 1
