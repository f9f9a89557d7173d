"""Whether an int8 package's decoder runs faster computing in fp32: the same package
loaded twice, once as exported (8-bit MatMulNBits: int8 weights, int8 activations) and
once with its decoder's weights dequantized to fp32 MatMuls (the same weight values),
plain greedy and input drafting on each, alternating, median of rounds.

    python -m bench.decoder_compute [PKG] [--data jfleg|ids] [--limit 754] [--rounds 3]
        [--threads 2] [--out DIR]

A lead, not a feature: on AVX2 CPUs without VNNI, MatMulNBits' int8 path scales worse
with the rows of a verify pass than fp32 GEMM does. The dequantized decoder is built
in a temporary folder; the package is unchanged. Its outputs are compared with the
package's own (fp32 activations round differently) and input drafting's with plain
greedy's on the same decoder (exactness)."""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np

from bench.timing import alternating_seconds

CONFIGS = {"plain": None, "input": "input"}


def fp32_decoder(package: Path, out: Path) -> Path:
    """out/decoder.onnx: the package's decoder with every 8-bit MatMulNBits (no zero
    points: 128 implied) replaced by a MatMul over its dequantized fp32 weights [K, N]."""
    import onnx
    from onnx import numpy_helper

    from export.row_invariant import subgraphs
    model = onnx.load(str(package / "decoder.onnx"))
    owners = {}  # initializer name -> (graph, tensor), over the If branches too

    def collect(graph):
        for tensor in graph.initializer:
            owners[tensor.name] = (graph, tensor)
        for node in graph.node:
            for inner in subgraphs(node):
                collect(inner)
    collect(model.graph)
    weights: dict[str, str] = {}
    unused: set[str] = set()  # the int8 weights and scales, once every product is rewritten

    def rewrite(graph):
        for node in graph.node:
            for inner in subgraphs(node):
                rewrite(inner)
            if node.op_type != "MatMulNBits":
                continue
            attrs = {a.name: a.i for a in node.attribute}
            if attrs.get("bits") != 8 or len(node.input) > 3:
                raise SystemExit(f"{node.name}: only 8-bit MatMulNBits without zero points "
                                 "are dequantized here")
            name = node.input[1]
            if name not in weights:
                k, n = attrs["K"], attrs["N"]
                packed = numpy_helper.to_array(owners[name][1]).astype(np.float32)  # [N, blocks, size]
                scales = numpy_helper.to_array(owners[node.input[2]][1]).reshape(n, -1)
                dense = ((packed - 128.0) * scales[:, :, None]).reshape(n, -1)[:, :k]
                tensor = numpy_helper.from_array(np.ascontiguousarray(dense.T), name + ".fp32")
                owners[name][0].initializer.append(tensor)
                weights[name] = tensor.name
            unused.update(node.input[1:3])
            inputs = [node.input[0], weights[name]]
            node.op_type, node.domain = "MatMul", ""
            del node.attribute[:]
            del node.input[:]
            node.input.extend(inputs)
    rewrite(model.graph)
    for name in unused:
        graph, tensor = owners[name]
        graph.initializer.remove(tensor)
    if not weights:
        raise SystemExit(f"{package}: its decoder has no 8-bit MatMulNBits (not an int8 package)")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "decoder.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="decoder.weights")
    return path


def run(package: str, inputs: list, rounds: int, threads: int, max_new_tokens: int = 160) -> dict:
    from edgeseq.runtime.providers import make_session

    import edgeseq
    with tempfile.TemporaryDirectory(prefix="edgeseq-fp32-decoder-") as tmp:
        engines = {"int8": edgeseq.load(package, threads=threads),
                   "fp32": edgeseq.load(package, threads=threads)}
        dequantized = fp32_decoder(engines["fp32"].directory, Path(tmp))
        runner = engines["fp32"].runner
        runner.decoder = runner.sessions.decoder = make_session(dequantized, engines["fp32"].config)
        def decode(engine, draft, items):
            return [engine.generate(item, max_new_tokens=max_new_tokens, draft=draft).token_ids
                    for item in items]
        ways = {f"{name}/{config}": (lambda e=engine, d=draft: decode(e, d, inputs))
                for name, engine in engines.items() for config, draft in CONFIGS.items()}
        for engine in engines.values():  # warm-up: onnxruntime allocates for new shapes
            for draft in CONFIGS.values():
                decode(engine, draft, inputs[:20])
        times, outputs = alternating_seconds(ways, rounds)
    seconds = {way: statistics.median(t) for way, t in times.items()}
    same = lambda a, b: sum(x == y for x, y in zip(outputs["/".join(a)], outputs["/".join(b)]))
    return {"inputs": len(inputs), "rounds": rounds, "seconds": seconds, "rounds_s": times,
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
    vocab = edgeseq.load(a.package, threads=1).arch.vocab_size
    r = run(a.package, load_inputs(a.data, a.limit, vocab), a.rounds, a.threads, a.max_new_tokens)
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
    if a.out:
        write_json(a.out, "decoder_compute.json", {"package": a.package, **r,
                                                   "machine": machine_info(a.threads)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
