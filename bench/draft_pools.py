"""A draft engine beside its target: what their thread pools cost. Per pool setup, plain
greedy decoding and drafting with the second engine (draft=engine), in one child process
each (onnxruntime's shared pool is process-wide), setups alternating round by round.

    python -m bench.draft_pools TARGET DRAFT [--limit 100] [--rounds 3] [--threads 2]

Setups: "own pools" (both engines as edgeseq.load makes them: spinning decoder pools),
"drafter sleeps" (the draft engine loaded with spin=False), "shared pool" (both with
shared_pool=True). With a same-size drafter drafting cannot pay; what differs between
setups is the pool cost."""
from __future__ import annotations

import argparse
import json
import statistics
import time

from bench.children import alternate

SETUPS = {"own pools": ({}, {}), "drafter sleeps": ({}, {"spin": False}),
          "shared pool": ({"shared_pool": True}, {"shared_pool": True})}


def child(target: str, draft: str, setup: str, limit: int, threads: int) -> dict:
    import warnings

    import edgeseq
    from bench.speculative import load_inputs
    warnings.simplefilter("ignore", RuntimeWarning)  # the separate-pools warning: measured here
    own, theirs = SETUPS[setup]
    engine = edgeseq.load(target, threads=threads, **own)
    drafter = edgeseq.load(draft, threads=threads, **theirs)
    inputs = load_inputs("jfleg", limit, engine.arch.vocab_size)
    opts = {"max_new_tokens": 160, "rerank_source": False, "draft": None}

    def seconds(**extra) -> float:
        began = time.perf_counter()
        for item in inputs:
            engine.generate(item, **{**opts, **extra})
        return time.perf_counter() - began

    seconds(), seconds(draft=drafter)  # warm-up
    return {"plain_s": seconds(), "drafted_s": seconds(draft=drafter)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("target")
    ap.add_argument("draft")
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", choices=list(SETUPS), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.target, a.draft, a.child, a.limit, a.threads)))
        return 0
    runs = alternate("bench.draft_pools", lambda setup: [
        a.target, a.draft, "--child", setup, "--limit", str(a.limit), "--threads", str(a.threads)],
        list(SETUPS), a.rounds)
    print(f"{a.limit} JFLEG sentences, {a.threads} threads, median of {a.rounds} rounds\n")
    print("| pools | plain s | drafted s | drafted speed vs plain |")
    print("| --- | --- | --- | --- |")
    for setup, results in runs.items():
        plain = statistics.median(r["plain_s"] for r in results)
        drafted = statistics.median(r["drafted_s"] for r in results)
        print(f"| {setup} | {plain:.2f} | {drafted:.2f} | {plain / drafted:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
