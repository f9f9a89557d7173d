"""bench.speculative: how a repeat runs its configurations."""
from __future__ import annotations

from types import SimpleNamespace

from bench.speculative import run_repeat


class NgramCache:
    def __init__(self):
        self.learned = []


class RecordingEngine:
    """Answers each call with its input as output, records which drafter ran on which input
    and which n-gram cache the call could teach."""

    def __init__(self):
        self.ngram = NgramCache()
        self.calls = []
        self.caches = {}  # drafter -> the n-gram cache each of its calls could teach

    def generate(self, item, **options):
        assert "draft" in options  # plain greedy asked as draft=None, not left to "auto"
        drafter = options["draft"] or "plain"
        self.calls.append((drafter, item))
        self.ngram.learned.append((drafter, item))
        self.caches.setdefault(drafter, []).append(self.ngram)
        return SimpleNamespace(token_ids=[item], stats=SimpleNamespace())


def _args(interleave: int) -> SimpleNamespace:
    return SimpleNamespace(max_new_tokens=16, max_draft=None, rerank_source=False, copy_bias=None,
                           memory_budget=None, batch=1, interleave=interleave)


CONFIGS = [("plain", None, "auto", None), ("ngram", "ngram", "auto", None)]


def test_without_interleaving_each_configuration_runs_over_all_inputs_in_turn():
    engine = RecordingEngine()
    results = run_repeat(engine, [1, 2, 3, 4], CONFIGS, _args(0), rep=1)

    # repeat 1 starts with the second configuration: drift favours none
    assert engine.calls == [("ngram", 1), ("ngram", 2), ("ngram", 3), ("ngram", 4),
                            ("plain", 1), ("plain", 2), ("plain", 3), ("plain", 4)]
    assert results["plain"]["outputs"] == results["ngram"]["outputs"] == [[1], [2], [3], [4]]


def test_interleaving_runs_every_configuration_on_each_chunk_and_joins_them_in_input_order():
    engine = RecordingEngine()
    results = run_repeat(engine, [1, 2, 3, 4, 5], CONFIGS, _args(2), rep=0)

    assert engine.calls == [("plain", 1), ("plain", 2), ("ngram", 1), ("ngram", 2),
                            ("ngram", 3), ("ngram", 4), ("plain", 3), ("plain", 4),
                            ("plain", 5), ("ngram", 5)]
    for name in ("plain", "ngram"):
        assert results[name]["outputs"] == [[1], [2], [3], [4], [5]]
        assert len(results[name]["call_seconds"]) == 5
        assert results[name]["seconds"] >= sum(results[name]["call_seconds"])


def test_the_ngram_drafter_learns_from_its_own_outputs_only():
    engine = RecordingEngine()
    run_repeat(engine, [1, 2, 3, 4], CONFIGS, _args(2), rep=0)

    first, *rest = engine.caches["ngram"]
    assert all(cache is first for cache in rest)  # one cache through the repeat's chunks
    assert first.learned == [("ngram", 1), ("ngram", 2), ("ngram", 3), ("ngram", 4)]
