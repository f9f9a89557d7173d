"""How an engine's two sessions share the cores: both with their own spinning pools, the
encoder's pool sleeping when idle (edgeseq's default for models 256 or more wide), the
same with one encoder thread (`encoder_threads=1`, the default for narrower models), or
one process-wide pool (`shared_pool=True`): first-token latency
and decode tokens/s of one package, and the encoder alone (calls back to back), one run.

    python -m bench.thread_pools PKG [--threads 2] [--rounds 4] [--input-tokens 64] [--new-tokens 64]

onnxruntime has one process-wide pool, so every measurement runs in its own child
process; the two modes alternate round by round so drift on a shared machine hits both."""
from __future__ import annotations

import argparse
import json
import statistics
import time

from bench.children import alternate

MODES = ("both spin", "encoder sleeps", "encoder 1 thread", "shared pool")


def child(package: str, mode: str, threads: int, input_tokens: int, new_tokens: int) -> dict:
    import numpy as np

    import edgeseq
    import edgeseq.runtime.decoder as decoder
    if mode == "both spin":  # what edgeseq did before: the encoder's workers spin too
        make = decoder.make_session
        decoder.make_session = lambda path, config, spin=None, threads=None, profile=None, \
            graph=None: make(path, config, graph=graph)
    encoder_threads = {"encoder 1 thread": 1, "shared pool": None}.get(mode, threads)
    engine = edgeseq.load(package, threads=threads, shared_pool=mode == "shared pool",
                          encoder_threads=encoder_threads)
    vocab = engine.arch.vocab_size
    ids = np.random.default_rng(0).integers(5, vocab, input_tokens - 1).tolist() + [engine.manifest.special.eos]
    for _ in range(3):
        engine.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, draft=None)
    first, full = [], []
    for _ in range(10):
        t = time.perf_counter()
        engine.generate(ids, max_new_tokens=1, min_new_tokens=1, draft=None)
        first.append(time.perf_counter() - t)
        t = time.perf_counter()
        engine.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, draft=None)
        full.append(time.perf_counter() - t)
    t1, tn = statistics.median(first), statistics.median(full)
    # the encoder alone, calls back to back with no decoder pass between them (what its
    # own thread count decides, without the decoder's spinning worker in the way)
    feed = np.array([ids], np.int64)
    encodes = []
    for _ in range(50):
        t = time.perf_counter()
        engine.runner.encode(feed, np.ones_like(feed))
        encodes.append(time.perf_counter() - t)
    return {"first_token_ms": t1 * 1e3, "decode_tokens_per_s": (new_tokens - 1) / (tn - t1),
            "encode_ms": statistics.median(encodes) * 1e3}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("package")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--input-tokens", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--child", choices=list(MODES), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.package, a.child, a.threads, a.input_tokens, a.new_tokens)))
        return 0
    results = alternate("bench.thread_pools", lambda mode: [
        a.package, "--child", mode, "--threads", str(a.threads), "--input-tokens",
        str(a.input_tokens), "--new-tokens", str(a.new_tokens)], list(MODES), a.rounds)
    print(f"\n{a.package}, {a.threads} threads, {a.input_tokens} input / {a.new_tokens} new tokens, "
          f"median of {a.rounds} processes x 10 calls\n")
    print("| sessions' threads | first token ms | decode tokens/s | encoder alone ms |")
    print("| --- | --- | --- | --- |")
    med = {m: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for m, rs in results.items()}
    for mode, m in med.items():
        print(f"| {mode} | {m['first_token_ms']:.1f} | {m['decode_tokens_per_s']:.1f} | {m['encode_ms']:.2f} |")
    base = med[MODES[0]]
    for mode in MODES[1:]:
        m = med[mode]
        print(f"\n{mode} / {MODES[0]}: first token {base['first_token_ms'] / m['first_token_ms']:.2f}x as fast, "
              f"decode {m['decode_tokens_per_s'] / base['decode_tokens_per_s']:.2f}x, "
              f"encoder alone {base['encode_ms'] / m['encode_ms']:.2f}x as fast")
    one, two = med["encoder 1 thread"], med["encoder sleeps"]
    print(f"\nencoder 1 thread / encoder sleeps ({a.threads} threads): encoder alone "
          f"{two['encode_ms'] / one['encode_ms']:.2f}x as fast, first token "
          f"{two['first_token_ms'] / one['first_token_ms']:.2f}x as fast")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
