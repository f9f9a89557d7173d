"""How cost grows with the work, for one package: first-token latency against input
length, per-token decode cost against output length, throughput against batch size, at
1 and 2 threads. First-token latency should grow with input length; per-token cost should
stay nearly flat with output length (the KV cache is preallocated and written in place).

    python -m bench.scaling PKG [--out DIR] [--repeats 3] [--quick]"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

INPUTS = (16, 32, 64, 128, 256, 512)
OUTPUTS = (16, 32, 64, 128, 256)
BATCHES = (1, 2, 4, 8, 16)


def _ids(engine, length: int, seed: int = 0) -> list[int]:
    vocab = engine.arch.vocab_size
    ids = np.random.default_rng(seed).integers(5, max(6, vocab - 1), length - 1).tolist()
    return ids + [engine.manifest.special.eos]


def _median_s(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure(engine, repeats: int, quick: bool) -> dict:
    limit = engine.arch.max_source_positions
    inputs = [n for n in INPUTS if n <= limit][: 3 if quick else None]
    outputs = [n for n in OUTPUTS if n + 1 <= engine.arch.max_target_positions or
               engine.arch.positions.value == "relative"][: 2 if quick else None]
    batches = BATCHES[: 2 if quick else None]
    first = {n: 1e3 * _median_s(lambda n=n: engine.generate(_ids(engine, n), max_new_tokens=1,
                                                           min_new_tokens=1, draft=None), repeats)
             for n in inputs}
    per_token = {}
    for n in outputs:
        t_n = _median_s(lambda n=n: engine.generate(_ids(engine, 32), max_new_tokens=n,
                                                    min_new_tokens=n, draft=None), repeats)
        t_1 = _median_s(lambda: engine.generate(_ids(engine, 32), max_new_tokens=1,
                                                min_new_tokens=1, draft=None), repeats)
        per_token[n] = 1e3 * (t_n - t_1) / (n - 1)
    throughput = {}
    for b in batches:
        rows = [_ids(engine, 32, seed) for seed in range(b)]
        t = _median_s(lambda rows=rows: engine.generate(rows, max_new_tokens=32,
                                                        min_new_tokens=32, draft=None), repeats)
        throughput[b] = b * 32 / t
    return {"first_token_ms_by_input": first, "decode_ms_per_token_by_output": per_token,
            "tokens_per_s_by_batch": throughput}


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    titles = [("first_token_ms_by_input", "input tokens", "first-token latency (ms)"),
              ("decode_ms_per_token_by_output", "output tokens", "decode ms per token"),
              ("tokens_per_s_by_batch", "batch size", "tokens/s")]
    for ax, (key, xlabel, ylabel) in zip(axes, titles):
        for threads, res in results.items():
            xs = [int(x) for x in res[key]]
            ax.plot(xs, list(res[key].values()), marker="o", label=f"{threads} thread(s)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    import edgeseq
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("package")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="a few points only (smoke test)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    results = {}
    for threads in (int(t) for t in args.threads.split(",")):
        engine = edgeseq.load(args.package, threads=threads)
        results[threads] = measure(engine, args.repeats, args.quick)
        for key, series in results[threads].items():
            cells = ", ".join(f"{k}: {v:.1f}" for k, v in series.items())
            print(f"{threads} thread(s) {key}: {cells}", flush=True)
    if args.out:
        from bench.machine import machine_info, write_json
        write_json(args.out, "scaling.json", {"package": args.package,
                                              "machine": machine_info(max(results)),
                                              "results": results})
        try:
            plot(results, args.out / "scaling.png")
        except ImportError:
            print("matplotlib missing: no plot")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
