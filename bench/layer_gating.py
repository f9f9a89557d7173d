"""What the decoder's per-layer If gating costs per step: the same int8 package decoded
with the gated decoder graph and with an inlined (ungated) copy, alternating runs in one
process. Usage: python -m bench.layer_gating CHECKPOINT_DIR [--threads 2] [--steps 64]"""
from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path

import numpy as np


def _decode_ms(runner, state, steps: int) -> float:
    cache = runner.new_cache(1, steps + 1)
    token = np.zeros((1, 1), np.int64)
    start = time.perf_counter()
    for _ in range(steps):
        token = runner.step(token, state, cache)[:, -1:].argmax(-1)
    return (time.perf_counter() - start) * 1e3 / steps


def main() -> None:
    from edgeseq import names
    from edgeseq.export import export_checkpoint
    from edgeseq.export.checkpoint import load_checkpoint
    from edgeseq.export.graphs import build_decoder
    from edgeseq.export.onnx_builder import WeightStore
    from edgeseq.export.package import write_package
    from edgeseq.manifest import read_manifest
    from edgeseq.runtime.decoder import LayerPlan, Seq2SeqRunner
    from edgeseq.runtime.providers import SessionConfig, make_session

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("checkpoint")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgeseq-gating-"))
    export_checkpoint(args.checkpoint, work / "gated", quant="int8", validate=False)
    ck = load_checkpoint(args.checkpoint)
    store = WeightStore(ck.weights)
    from edgeseq.export.graphs import build_encoder
    graphs = {names.ENCODER_FILE: build_encoder(ck.spec, store, "int8"),
              # padded as the exported "gated" decoder is (export/row_invariant.py)
              names.DECODER_FILE: build_decoder(ck.spec, store, "int8", gated=False,
                                                row_invariant=True)}
    manifest = read_manifest(work / "gated")
    write_package(work / "inline", graphs, store,
                  dict(arch=ck.spec, quant="int8", special=ck.special), None)
    config = SessionConfig(threads=args.threads)
    layers = ck.spec.decoder_layers

    def runner(name: str) -> Seq2SeqRunner:
        r = Seq2SeqRunner(work / "gated", manifest, config)
        if name == "inline":
            r.decoder = make_session(work / "inline" / names.DECODER_FILE, config)
        if name == "gated, half the layers":
            r.full_plan = LayerPlan.first(layers // 2, layers)
        return r

    ids = np.random.default_rng(0).integers(5, 1000, (1, 64))
    state = runner("gated").encode(ids, np.ones_like(ids))
    timings: dict[str, list[float]] = {"inline": [], "gated": [], "gated, half the layers": []}
    for _ in range(args.repeats + 1):  # the first round warms up
        for name in timings:
            # one live session at a time: an idle session's spinning intra-op threads would
            # take the cores of the one being timed (an earlier version of this benchmark
            # kept all three alive and reported a gating cost that was mostly that)
            r = runner(name)
            _decode_ms(r, state, 4)
            timings[name].append(_decode_ms(r, state, args.steps))
            del r
            gc.collect()
    base = float(np.median(timings["inline"][1:]))
    print(f"| decoder graph | ms/step (median of {args.repeats}) | vs inline |")
    print("| --- | --- | --- |")
    for name, values in timings.items():
        med = float(np.median(values[1:]))
        print(f"| {name} | {med:.3f} | {med / base:.3f}x ({(med - base) * 1e3:+.0f} us) |")


if __name__ == "__main__":
    main()
