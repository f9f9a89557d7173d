"""Input drafting on one model in several weight formats, in one run: each package's plain
greedy decoding and input drafting, the configurations interleaved repeat by repeat.
Reports the speedup over the same package's plain greedy (what speculation gives that
package) and over the fastest package's plain greedy (what a user picking a package
and a decoding mode gets).

    edgeseq export models/grammar/checkpoint PKG_FP32 --quant fp32
    python -m bench.speculative_formats default PKG_FP32 [--data jfleg] [--repeats 5]
        [--limit 754] [--threads 2] [--out DIR]

One engine lives at a time: a configuration loads its package, decodes the first 32
inputs to warm up (onnxruntime's first runs of new shapes, the draft planner's first
figures), then times every input once. Idle sessions of another package would keep
spinning threads alive beside the timed one."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from bench.speculative import load_inputs, run_config

WARM_UP = 32
MODES = {"plain": None, "input": "input"}


def summarise(times: dict[tuple[str, str], list[float]], outputs: dict, packages: list[str]) -> list[dict]:
    """One row per (package, mode): median seconds, speedup over the package's own plain
    greedy and over the fastest plain greedy, and outputs identical to the package's plain."""
    median = {key: float(np.median(t)) for key, t in times.items()}
    fastest_plain = min(median[(p, "plain")] for p in packages)
    rows = []
    for package in packages:
        own_plain = median[(package, "plain")]
        plain_out = outputs[(package, "plain")]
        for mode in MODES:
            key = (package, mode)
            out = outputs[key]
            rows.append({"package": package, "mode": mode, "seconds_median": median[key],
                         "seconds_min": min(times[key]), "seconds_max": max(times[key]),
                         "speedup_own_plain": own_plain / median[key],
                         "speedup_fastest_plain": fastest_plain / median[key],
                         "identical_to_own_plain": sum(a == b for a, b in zip(out, plain_out)),
                         "inputs": len(out)})
    return rows


def time_config(package: str, mode: str, inputs: list, args) -> tuple[float, list]:
    import edgeseq
    engine = edgeseq.load(package, threads=args.threads)
    run_config(engine, inputs[:WARM_UP], MODES[mode], args)
    res = run_config(engine, inputs, MODES[mode], args)
    return res["seconds"], res["outputs"]


def main(argv: list[str] | None = None) -> int:
    import edgeseq
    from bench.machine import machine_info
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("packages", nargs="+")
    ap.add_argument("--data", default="jfleg", choices=["jfleg", "news"])
    ap.add_argument("--limit", type=int, default=754)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    # run_config's options: batch 1, the runtime's draft length, rerank_source off (as in
    # bench.speculative: the drafters are compared on decoding alone)
    args = SimpleNamespace(batch=1, max_new_tokens=160, max_draft=None, rerank_source=False, copy_bias=None,
                           memory_budget=None, threads=a.threads)
    first = edgeseq.load(a.packages[0], threads=a.threads)
    inputs = load_inputs(a.data, a.limit, first.arch.vocab_size)
    formats = {p: edgeseq.load(p, threads=a.threads).manifest.quant for p in a.packages}
    del first
    configs = [(p, m) for p in a.packages for m in MODES]
    times: dict = {c: [] for c in configs}
    outputs: dict = {}
    for rep in range(a.repeats):
        turn = rep % len(configs)  # drift on a shared machine favours no configuration
        for package, mode in configs[turn:] + configs[:turn]:
            seconds, outputs[(package, mode)] = time_config(package, mode, inputs, args)
            times[(package, mode)].append(seconds)
            print(f"[{rep + 1}/{a.repeats}] {package} ({formats[package]}) {mode}: {seconds:.2f} s", flush=True)
    rows = summarise(times, outputs, a.packages)
    for r in rows:
        r["format"], r["package"] = formats[r["package"]], Path(r["package"]).name
    print(f"\n{len(inputs)} inputs ({a.data}), {a.threads} threads, median of {a.repeats}\n")
    print("| package | format | mode | time s (min-max) | vs its own plain | vs fastest plain | identical |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['package']} | {r['format']} | {r['mode']} | {r['seconds_median']:.2f} "
              f"({r['seconds_min']:.2f}-{r['seconds_max']:.2f}) | {r['speedup_own_plain']:.2f}x "
              f"| {r['speedup_fastest_plain']:.2f}x | {r['identical_to_own_plain']}/{r['inputs']} |")
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "speculative_formats.json").write_text(json.dumps(
            {"machine": machine_info(a.threads, Path(__file__).resolve().parents[1]),
             "data": a.data, "repeats": a.repeats, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
