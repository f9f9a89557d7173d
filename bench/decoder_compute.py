"""An int8 package's decoder multiplying in int8 (8-bit MatMulNBits: int8 weights, int8
activations) against in fp32 over the same weights dequantized at load
(runtime/decoder_products.py): the package loaded both ways, plain greedy and input
drafting on each, alternating, median of rounds.

    python -m bench.decoder_compute [PKG] [--data jfleg|ids] [--limit 754] [--rounds 3]
        [--threads 2] [--out DIR]

It measures what decides `fp32_decoder_products`' default (small decoders on x86 CPUs
without VNNI): run it on a new CPU or model to see which way pays there. Outputs are
compared between the two (fp32 activations round differently) and input drafting's with
plain greedy's on the same decoder (exactness)."""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from bench.timing import alternating_decodes

CONFIGS = {"plain": None, "input": "input"}
PRODUCTS = {"int8": False, "fp32": True}  # fp32_decoder_products


def run(package: str, inputs: list, rounds: int, threads: int, max_new_tokens: int = 160,
        score=None) -> dict:
    """`score`: outputs (token ids per input) -> a quality figure, reported per way."""
    import edgeseq
    engines = {name: edgeseq.load(package, threads=threads, fp32_decoder_products=fp32)
               for name, fp32 in PRODUCTS.items()}
    if not engines["fp32"].runner.sessions.fp32_products:
        raise SystemExit(f"{package}: its decoder has no 8-bit products (not an int8 package)")
    times, outputs = alternating_decodes(engines, CONFIGS, inputs, rounds, max_new_tokens)
    seconds = {way: statistics.median(t) for way, t in times.items()}
    same = lambda a, b: sum(x == y for x, y in zip(outputs["/".join(a)], outputs["/".join(b)]))
    quality = {way: score(outs) for way, outs in outputs.items()} if score else {}
    return {"inputs": len(inputs), "rounds": rounds, "seconds": seconds, "rounds_s": times,
            "quality": quality,
            "fp32_over_int8_time": {c: seconds[f"fp32/{c}"] / seconds[f"int8/{c}"] for c in CONFIGS},
            "input_speedup": {n: seconds[f"{n}/plain"] / seconds[f"{n}/input"] for n in engines},
            "input_vs_int8_plain": seconds["int8/plain"] / seconds["fp32/input"],
            "input_identical_to_plain": {n: same((n, "input"), (n, "plain")) for n in engines},
            "fp32_plain_as_int8_plain": same(("fp32", "plain"), ("int8", "plain"))}


def main(argv: list[str] | None = None) -> int:
    from bench.machine import machine_info, write_json
    from bench.speculative import load_inputs
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("package", nargs="?", default="default")
    ap.add_argument("--data", default="jfleg", choices=["jfleg", "ids"])
    ap.add_argument("--limit", type=int, default=754)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    import edgeseq
    probe = edgeseq.load(a.package, threads=1)
    score = None
    if a.data == "jfleg":  # the package's outputs with its own decoding defaults
        from bench.speculative_variants import jfleg_gleu
        score = lambda outs: jfleg_gleu(probe.codec, outs, len(outs))
    r = run(a.package, load_inputs(a.data, a.limit, probe.arch.vocab_size), a.rounds, a.threads,
            a.max_new_tokens, score)
    print(f"{r['inputs']} inputs ({a.data}), {a.threads} threads, median of {a.rounds} rounds\n")
    print("| decoder computes in | plain s | input s | input speedup | input identical to plain |")
    print("| --- | --- | --- | --- | --- |")
    for n in ("int8", "fp32"):
        print(f"| {n} | {r['seconds'][n + '/plain']:.2f} | {r['seconds'][n + '/input']:.2f} "
              f"| {r['input_speedup'][n]:.2f}x | {r['input_identical_to_plain'][n]}/{r['inputs']} |")
    ratio = r["fp32_over_int8_time"]
    print(f"\nfp32 / int8 time: plain {ratio['plain']:.3f}x, input {ratio['input']:.3f}x; fp32 input "
          f"drafting against int8 plain greedy: {r['input_vs_int8_plain']:.2f}x; fp32 plain outputs "
          f"as int8's: {r['fp32_plain_as_int8_plain']}/{r['inputs']}")
    if r["quality"]:
        print("GLEU: " + ", ".join(f"{way} {value:.4f}" for way, value in r["quality"].items()))
    if a.out:
        write_json(a.out, "decoder_compute.json", {"package": a.package, **r,
                                                   "machine": machine_info(a.threads)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
