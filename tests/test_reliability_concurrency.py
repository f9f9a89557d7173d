"""One engine shared by 8 threads: 200 mixed requests (greedy, beam, seeded sampling,
input / n-gram / layer drafters, batches, early exit) give exactly the outputs they give
one by one. See Engine's docstring for what is and is not safe to share."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import edgeseq

SOURCES = [[5, 9, 13, 22, 40, 7, 2], [30, 31, 8, 2], [11, 60, 61, 62, 63, 64, 65, 66, 67, 2],
           [44, 45, 46, 2], [70, 12, 12, 70, 12, 2], [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 2]]
KINDS = ("greedy", "beam", "sample", "input", "ngram", "layers", "batch", "batch-input",
         "sample-layers", "exit-after")
THREADS, REQUESTS = 8, 200


def mixed_requests(n: int, seed: int = 0) -> list[tuple[str, list, dict]]:
    """(kind, inputs, options), reproducible. Sampling with a drafter fixes the draft
    length (adaptive_draft=False): adaptive lengths follow measured timings, and the
    random stream a sampled draft consumes depends on its length."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        inputs: list = SOURCES[rng.integers(len(SOURCES))]
        kw: dict = {"max_new_tokens": int(rng.integers(1, 17))}
        if rng.random() < 0.3:
            kw["min_new_tokens"] = kw["max_new_tokens"]
        if kind == "beam":
            kw["num_beams"] = int(rng.integers(2, 4))
        elif kind == "sample":
            kw.update(do_sample=True, seed=i, top_k=int(rng.integers(0, 20)), temperature=0.8)
        elif kind in ("input", "ngram", "layers"):
            kw.update(draft=kind, max_draft=int(rng.integers(1, 6)))
        elif kind.startswith("batch"):
            inputs = [SOURCES[j] for j in rng.choice(len(SOURCES), 3)]
            if kind == "batch-input":
                kw["draft"] = "input"
        elif kind == "sample-layers":
            kw.update(do_sample=True, seed=i, draft="layers", adaptive_draft=False, max_draft=3)
        elif kind == "exit-after":
            kw["exit_after"] = 2
        out.append((kind, inputs, kw))
    return out


def run(engine, request) -> list[list[int]]:
    _, inputs, kw = request
    result = engine.generate(inputs, **kw)
    return [r.token_ids for r in (result if isinstance(result, list) else [result])]


def run_both(engine, requests, threads: int):
    """Outputs one by one, then from `threads` threads in a shuffled order; and times."""
    started = time.perf_counter()
    serial = [run(engine, r) for r in requests]
    serial_s = time.perf_counter() - started
    order = np.random.default_rng(1).permutation(len(requests))
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        shuffled = list(pool.map(lambda i: run(engine, requests[i]), order))
    threaded_s = time.perf_counter() - started
    threaded = [None] * len(requests)
    for i, out in zip(order, shuffled):
        threaded[i] = out
    return serial, threaded, serial_s, threaded_s


@pytest.fixture(scope="module")
def engine(tiny_package):
    return edgeseq.load(str(tiny_package("bart", "fp32")[0]), threads=1)


def test_eight_threads_give_the_outputs_of_one_by_one(engine):
    requests = mixed_requests(REQUESTS)
    engine.generate(SOURCES[0], max_new_tokens=16)  # n-gram history before either run
    serial, threaded, _, _ = run_both(engine, requests, THREADS)
    differ = [(i, requests[i][0]) for i in range(len(requests)) if serial[i] != threaded[i]]
    assert not differ, differ


def test_ngram_drafting_from_the_shared_table_equals_plain_greedy(engine):
    """The n-gram table is shared by every call and learned concurrently; drafts only
    change how many tokens a pass verifies, never the greedy output."""
    requests = [r for r in mixed_requests(60, seed=2) if r[0] in ("ngram", "input", "layers")]
    plain = [(k, i, {n: v for n, v in kw.items() if n not in ("draft", "max_draft")})
             for k, i, kw in requests]
    want = [run(engine, r) for r in plain]
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        got = list(pool.map(lambda r: run(engine, r), requests * 3))
    assert got == want * 3
