"""Input drafting across variants of one editing model, in one run: packages (weight
formats) and copy biases, each decoded by plain greedy and by input drafting, the
configurations interleaved repeat by repeat. Reports the speedup over the same
variant's plain greedy (what speculation gives it), over the fastest plain greedy in
the run (what a user picking a variant and a decoding mode gets), and, on JFLEG, the
GLEU of the variant's output (a copy bias changes what the model writes).

    edgeseq export models/grammar/checkpoint PKG_FP32 --quant fp32
    python -m bench.speculative_variants default PKG_FP32 [--copy-bias 0,1,2]
        [--rerank-source] [--data jfleg] [--repeats 5] [--limit 754] [--threads 2] [--out DIR]

One engine lives at a time: a configuration loads its package, decodes the first 32
inputs to warm up (onnxruntime's first runs of new shapes, the draft planner's first
figures), then times every input once. Idle sessions of another package would keep
spinning threads alive beside the timed one."""
from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from bench.speculative import SHARED, load_inputs, run_config
from bench.timing import turn_order

WARM_UP = 32
MODES = {"plain": None, "input": "input"}


def summarise(times: dict[tuple, list[float]], outputs: dict[tuple, list], variants: list[tuple]) -> list[dict]:
    """One row per (variant, mode): median seconds, speedup over the variant's own plain
    greedy and over the fastest plain greedy, and outputs identical to the variant's
    plain. A variant is (package, copy bias)."""
    median = {key: float(np.median(t)) for key, t in times.items()}
    fastest_plain = min(median[(*v, "plain")] for v in variants)
    rows = []
    for variant in variants:
        own_plain = median[(*variant, "plain")]
        plain_out = outputs[(*variant, "plain")]
        for mode in MODES:
            key = (*variant, mode)
            out = outputs[key]
            rows.append({"package": variant[0], "copy_bias": variant[1], "mode": mode,
                         "seconds_median": median[key], "seconds_min": min(times[key]),
                         "seconds_max": max(times[key]), "speedup_own_plain": own_plain / median[key],
                         "speedup_fastest_plain": fastest_plain / median[key],
                         "identical_to_own_plain": sum(a == b for a, b in zip(out, plain_out)),
                         "inputs": len(out)})
    return rows


def jfleg_gleu(codec, outputs: list[list[int]], limit: int) -> float:
    from edgeseq.quality import gleu, jfleg_tokenize, load_jfleg
    full = load_jfleg(SHARED / "data" / "jfleg-dev")
    references = [refs[:limit] for refs in full.references]
    hypotheses = [jfleg_tokenize(codec.decode(ids)) for ids in outputs]
    return gleu(full.sources[:limit], hypotheses, references)


def main(argv: list[str] | None = None) -> int:
    import edgeseq
    from bench.machine import machine_info, write_json
    from edgeseq.manifest import read_manifest
    from edgeseq.runtime.engine import resolve_package
    from edgeseq.runtime.text import TextCodec
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("packages", nargs="+")
    ap.add_argument("--copy-bias", default="0", help="comma-separated copy biases (default 0)")
    ap.add_argument("--rerank-source", action="store_true",
                    help="rerank_source=True everywhere (off by default: decoding alone)")
    ap.add_argument("--data", default="jfleg", choices=["jfleg", "news"])
    ap.add_argument("--limit", type=int, default=754)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    biases = [float(b) for b in a.copy_bias.split(",")]
    # the manifests alone (no sessions: an idle one would spin beside the timed engine)
    manifests = {p: read_manifest(resolve_package(p)) for p in a.packages}
    inputs = load_inputs(a.data, a.limit, manifests[a.packages[0]].arch.vocab_size)
    formats = {p: m.quant for p, m in manifests.items()}
    variants = [(p, b) for p in a.packages for b in biases]
    configs = [(*v, m) for v in variants for m in MODES]
    times: dict = {c: [] for c in configs}
    outputs: dict = {}
    for rep in range(a.repeats):
        # drift on a shared machine favours no configuration
        for package, bias, mode in turn_order(configs, rep):
            # run_config's options: batch 1, the runtime's draft length
            args = SimpleNamespace(batch=1, max_new_tokens=160, max_draft=None, memory_budget=None,
                                   rerank_source=a.rerank_source, copy_bias=bias)
            engine = edgeseq.load(package, threads=a.threads)
            run_config(engine, inputs[:WARM_UP], MODES[mode], args)
            res = run_config(engine, inputs, MODES[mode], args)
            times[(package, bias, mode)].append(res["seconds"])
            outputs[(package, bias, mode)] = res["outputs"]
            print(f"[{rep + 1}/{a.repeats}] {package} ({formats[package]}) copy bias {bias:g} {mode}: "
                  f"{res['seconds']:.2f} s", flush=True)
    rows = summarise(times, outputs, variants)
    codecs = {p: TextCodec(resolve_package(p) / "tokenizer.json") for p in a.packages}
    for r in rows:
        if a.data == "jfleg":
            r["gleu"] = jfleg_gleu(codecs[r["package"]], outputs[(r["package"], r["copy_bias"], r["mode"])],
                                   a.limit)
        r["format"], r["package"] = formats[r["package"]], Path(r["package"]).name
    print(f"\n{len(inputs)} inputs ({a.data}), rerank_source {a.rerank_source}, {a.threads} threads, "
          f"median of {a.repeats}\n")
    print("| package | format | copy bias | mode | time s (min-max) | vs its own plain | "
          "vs fastest plain | identical | GLEU |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['package']} | {r['format']} | {r['copy_bias']:g} | {r['mode']} | "
              f"{r['seconds_median']:.2f} ({r['seconds_min']:.2f}-{r['seconds_max']:.2f}) | "
              f"{r['speedup_own_plain']:.2f}x | {r['speedup_fastest_plain']:.2f}x | "
              f"{r['identical_to_own_plain']}/{r['inputs']} | {r.get('gleu', float('nan')):.4f} |")
    if a.out:
        name = "speculative_variants_rerank.json" if a.rerank_source else "speculative_variants.json"
        write_json(a.out, name, {
            "machine": machine_info(a.threads), "data": a.data, "repeats": a.repeats,
            "rerank_source": a.rerank_source,
            "weights_sha256": {Path(p).name: m.files["weights.bin"]["sha256"]
                               for p, m in manifests.items()},
            "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
