"""The demo's small parts on their own: word diff, request parsing, the engine cache,
profiles and the memory reading."""
from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # mobile_demo/ is not an installed package
    sys.path.insert(0, str(ROOT))

from mobile_demo.catalog import ModelEntry  # noqa: E402
from mobile_demo.diffing import Op, changed_words, marked, word_diff  # noqa: E402
from mobile_demo.engines import EngineCache  # noqa: E402
from mobile_demo.errors import DemoRequestError, ServiceBusy  # noqa: E402
from mobile_demo.figures import rss_bytes  # noqa: E402
from mobile_demo.inputs import (Decoding, Drafter, Limits, Task, parse_audio_job,  # noqa: E402
                                parse_settings, parse_text_job)
from edgeseq.profiles import PROFILES  # noqa: E402


def test_word_diff_marks_insertions_deletions_and_replacements():
    changes = word_diff("She go to school every days .", "She goes to the school every day .")
    assert [c.op for c in changes] == [Op.EQUAL, Op.REPLACE, Op.EQUAL, Op.INSERT, Op.EQUAL,
                                       Op.REPLACE, Op.EQUAL]
    assert marked(changes) == "She [-go-]{+goes+} to {+the+} school every [-days-]{+day+} ."
    assert changed_words(changes) == 5
    assert [c.op for c in word_diff("a b c", "a c")] == [Op.EQUAL, Op.DELETE, Op.EQUAL]
    assert all(c.op == Op.EQUAL for c in word_diff("same  words\n", "same words"))


def test_settings_map_to_engine_options():
    s = parse_settings({})
    assert s.decoding == Decoding.GREEDY and s.drafter == Drafter.AUTO
    with pytest.raises(ValueError, match="for_task"):  # "auto" is no engine option
        s.generation_options()
    # auto: fixing text drafts from the input; free generation streams
    assert s.for_task(Task.FIX).generation_options() == {"max_new_tokens": 64, "draft": "input"}
    assert not s.for_task(Task.FIX).streams
    assert s.for_task(Task.GENERATE).drafter is None and s.for_task(Task.GENERATE).streams
    # no drafter is named as draft=None: an Engine call without draft= would use "auto"
    assert s.for_task(Task.GENERATE).generation_options() == {"max_new_tokens": 64, "draft": None}
    # ... and only when decoding greedily with every layer
    for other in ({"decoding": "sample"}, {"decoding": "beam"}, {"skip": "unified-2"}):
        assert parse_settings(other).for_task(Task.FIX).drafter is None
    assert parse_settings({"drafter": "none"}).for_task(Task.FIX).drafter is None
    s = parse_settings({"decoding": "sample", "temperature": 0.5, "top_p": 0.9,
                        "memory_budget_mb": 1500, "threads": 4, "drafter": "none"})
    assert s.generation_options() == {"max_new_tokens": 64, "do_sample": True, "draft": None,
                                      "temperature": 0.5, "top_p": 0.9, "memory_budget_mb": 1500}
    s = parse_settings({"decoding": "beam", "num_beams": 3}).for_task(Task.FIX)
    assert not s.streams and s.generation_options()["num_beams"] == 3
    s = parse_settings({"drafter": "layers"})
    assert s.drafter == Drafter.LAYERS and not s.streams
    assert parse_settings({"drafter": "none"}).drafter is None
    assert parse_settings({"copy_bias": 2}).for_task(Task.FIX).generation_options()["copy_bias"] == 2.0
    assert "copy_bias" not in parse_settings({"copy_bias": None}).for_task(Task.FIX).generation_options()


@pytest.mark.parametrize("values, message", [
    ({"max_new_tokens": 0}, "max_new_tokens must be an integer in [1, 256]"),
    ({"max_new_tokens": 2.5}, "max_new_tokens must be an integer"),
    ({"num_beams": True}, "num_beams must be an integer"),
    ({"top_p": 0}, "top_p must be a number in (0, 1]"),
    ({"memory_budget_mb": -5}, "memory_budget_mb must be a number"),
    ({"drafter": "model:/tmp/x"}, "drafter must be one of"),
    ({"decoding": None}, "decoding must be one of"),
    ({"threads": 1000}, "threads must be an integer in [0, 32]"),
    ({"seed": 1}, "unknown setting"),
    ({"copy_bias": -1}, "copy_bias must be a number in [0, 20]"),
])
def test_bad_settings_name_the_field(values, message):
    with pytest.raises(DemoRequestError, match=message.replace("[", r"\[").replace("(", r"\(")):
        parse_settings(values)


def test_text_jobs_are_checked():
    limits = Limits(max_text_chars=10)
    job = parse_text_job({"text": "  fix me  "}, limits)
    assert (job.task, job.text, job.model) == (Task.FIX, "fix me", None)
    for payload, message in [({"text": ""}, "empty"), ({"text": "x" * 11}, "at most 10"),
                             ({"text": 5}, "text must be a string"),
                             ({"text": "ok", "model": ["a"]}, "model must be"),
                             ({"text": "ok", "path": "/etc"}, "unknown field"),
                             ({"text": "ok", "settings": []}, "settings must be")]:
        with pytest.raises(DemoRequestError, match=message):
            parse_text_job(payload, limits)
    assert parse_audio_job({"model": ["w"], "threads": ["2"]}).threads == 2
    with pytest.raises(DemoRequestError, match="threads must be an integer"):
        parse_audio_job({"threads": ["two"]})


def _entry(name: str) -> ModelEntry:
    return ModelEntry(name, "t5", "int8", True, 1.0, f"/nowhere/{name}")


def _lease(cache: EngineCache, name: str, threads: int = 1) -> object:
    with cache.lease(_entry(name), threads) as engine:
        return engine


def test_engine_cache_loads_each_key_once_under_concurrency_and_evicts_the_oldest():
    started = threading.Barrier(8)

    def slow_load(entry: ModelEntry, threads: int) -> object:
        time.sleep(0.05)  # long enough for every thread to be waiting on the same key
        return object()
    cache = EngineCache(slow_load, capacity=2)

    def get(_: int) -> object:
        started.wait()
        return _lease(cache, "a")
    with ThreadPoolExecutor(8) as pool:
        engines = list(pool.map(get, range(8)))
    assert cache.loads == 1 and all(e is engines[0] for e in engines)
    _lease(cache, "b")
    _lease(cache, "a")  # a is now the most recent
    _lease(cache, "c")  # evicts b
    assert cache.keys() == [("a", 1), ("c", 1)] and cache.loads == 3 and cache.in_use() == {}


def test_engine_cache_never_holds_more_engines_than_its_capacity_while_requests_use_them():
    in_memory = []  # engines loaded while the cache held these

    def load(entry: ModelEntry, threads: int) -> object:
        in_memory.append(len(cache.keys()))
        return object()
    cache = EngineCache(load, capacity=2, busy_wait_s=30)
    with ThreadPoolExecutor(1) as pool:
        with cache.lease(_entry("a"), 1), cache.lease(_entry("a"), 2):
            third = pool.submit(_lease, cache, "a", 4)  # a third thread count: it waits
            time.sleep(0.1)
            with cache.lease(_entry("a"), 1):  # a loaded engine is shared, not waited for
                pass
            assert not third.done() and cache.loads == 2
        assert third.result(timeout=10) is not None and cache.loads == 3
    assert in_memory == [0, 1, 1]  # the third loaded after an idle engine was dropped
    assert len(cache.keys()) == 2 and cache.in_use() == {}


def test_engine_cache_refuses_with_busy_when_no_engine_comes_free():
    cache = EngineCache(lambda entry, threads: object(), capacity=1, busy_wait_s=0.05)
    with cache.lease(_entry("a"), 1):
        with pytest.raises(ServiceBusy, match="every loaded model is busy .1 requests") as err:
            _lease(cache, "b")
    assert err.value.status == 503
    assert _lease(cache, "b") is not None and cache.keys() == [("b", 1)]


def test_engine_cache_does_not_keep_a_failed_load():
    calls = []

    def failing(entry: ModelEntry, threads: int) -> object:
        calls.append(entry.id)
        raise OSError("disk gone")
    cache = EngineCache(failing, capacity=1, busy_wait_s=0.05)
    for _ in range(2):  # a failed load takes no room: the second try is no "busy"
        with pytest.raises(OSError):
            _lease(cache, "a", 0)
    assert calls == ["a", "a"] and cache.keys() == [] and cache.in_use() == {}


def test_profiles_are_threads_and_budget():
    assert {n: (p.threads, p.memory_budget_mb) for n, p in PROFILES.items()} == {
        "pi4": (4, 1500), "pi5": (4, 3000), "laptop": (2, None), "phone": (2, 800)}
    for p in PROFILES.values():
        parse_settings({"threads": p.threads, "memory_budget_mb": p.memory_budget_mb})


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="no /proc on this system")
def test_rss_is_read_from_proc():
    assert 10 << 20 < rss_bytes() < 64 << 30
