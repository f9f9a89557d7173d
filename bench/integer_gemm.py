"""An int8 package's encoder on this CPU with its weights as stored (uint8 x int8 integer
GEMM) and as unsigned weights (uint8 x uint8, rewritten at load: runtime/integer_gemm.py),
in one run: encoder time, sentence time, memory, and what the product costs in accuracy.

    python -m bench.integer_gemm [PKG] [--data jfleg|random] [--limit 754] [--rounds 3]
        [--max-new-tokens 160] [--reference FP32_PKG] [--threads 2] [--out DIR]
    python -m bench.integer_gemm --shape t5-small   # exports random t5-small int8 + fp32
    python -m bench.integer_gemm WHISPER_INT8 --data audio --reference WHISPER_FP32

Each setup runs in its own child process, the two alternating round by round so drift on
a shared machine hits both. A child loads the package, decodes every input once with the
package's defaults and --max-new-tokens (JFLEG: GLEU of the outputs), then times the encoder alone on every
input. `--reference`: the same checkpoint exported fp32; the encoder's cross-attention
K/V are compared with it (largest error over the largest value, per input). Which setup
the runtime picks by itself depends on the CPU (VNNI or not), printed with the results."""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

from bench.children import alternate
from bench.machine import machine_info, rss_mb, write_json
from bench.speculative import SHARED, load_inputs
from bench.speculative_variants import jfleg_gleu

SETUPS = {"stored": False, "unsigned": True}
CACHE = Path(__file__).resolve().parent / ".cache" / "integer_gemm"


def child(package: str, setup: str, data: str, limit: int, threads: int,
          reference: str | None, max_new_tokens: int) -> dict:
    import edgeseq
    engine = edgeseq.load(package, threads=threads, unsigned_int8_weights=SETUPS[setup])
    loaded_mb = rss_mb()
    if data == "audio":
        return transcribe_child(engine, loaded_mb, reference, threads)
    return text_child(engine, loaded_mb, data, limit, reference, threads, max_new_tokens)


def text_child(engine, loaded_mb: float, data: str, limit: int, reference: str | None,
               threads: int, max_new_tokens: int) -> dict:
    import numpy as np

    import edgeseq
    inputs = load_inputs(data, limit, engine.arch.vocab_size, SHARED)
    engine.generate(inputs[0], max_new_tokens=max_new_tokens, draft=None)  # onnxruntime's first runs of new shapes
    outputs, seconds = [], []
    for item in inputs:
        began = time.perf_counter()
        outputs.append(list(engine.generate(item, max_new_tokens=max_new_tokens, draft=None).token_ids))
        seconds.append(time.perf_counter() - began)
    feeds = [np.array([engine.codec.encode(i) if isinstance(i, str) else i], np.int64)
             for i in inputs]
    encodes = []
    for ids in feeds:
        began = time.perf_counter()
        engine.runner.encode(ids, np.ones_like(ids))
        encodes.append(time.perf_counter() - began)
    result = {"sentence_ms": statistics.median(seconds) * 1e3, "total_s": sum(seconds),
              "encode_ms": statistics.median(encodes) * 1e3, "rss_loaded_mb": loaded_mb,
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "outputs": outputs}  # peak before the reference below is loaded
    if reference:
        fp32 = edgeseq.load(reference, threads=threads)
        errors = []
        for ids in feeds[:32]:
            mask = np.ones_like(ids)
            got, want = engine.runner.encode(ids, mask).cross, fp32.runner.encode(ids, mask).cross
            errors.append(_largest_error(got, want))
        result["encoder_error_vs_fp32"] = statistics.median(errors)
    return result


def transcribe_child(engine, loaded_mb: float, reference: str | None, threads: int) -> dict:
    """Whisper: transcribe every shared clip (one warm-up first); the encoder's time per
    30 s window, and with `reference` its error on each clip's first window and whether
    the transcripts match the fp32 package's."""
    import numpy as np

    import edgeseq
    from edgeseq.runtime.audio import load_audio, log_mel_frames
    clips = sorted((SHARED / "data" / "audio").glob("*.wav"))
    engine.transcribe(str(clips[0]))
    texts, seconds, encoder_ms = [], [], []
    for clip in clips:
        result = engine.transcribe(str(clip))
        texts.append(result.text)
        seconds.append(result.stats.total_ms / 1e3)
        encoder_ms.append(result.stats.encoder_ms / result.stats.windows)
    out = {"sentence_ms": statistics.median(seconds) * 1e3, "total_s": sum(seconds),
           "encode_ms": statistics.median(encoder_ms), "rss_loaded_mb": loaded_mb,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "outputs": texts}
    if reference:
        fp32 = edgeseq.load(reference, threads=threads)
        n_mels = engine.manifest.generation["whisper"]["n_mels"]
        errors = []
        for clip in clips:
            mel = log_mel_frames(load_audio(str(clip)), n_mels)
            window = np.zeros((1, n_mels, 3000), np.float32)
            window[0, :, :min(3000, mel.shape[1])] = mel[:, :3000]
            got, want = engine.runner.encode_features(window).cross, fp32.runner.encode_features(window).cross
            errors.append(_largest_error(got, want))
        out["encoder_error_vs_fp32"] = statistics.median(errors)
        out["transcripts_as_fp32"] = sum(a == fp32.transcribe(str(c)).text for a, c in zip(texts, clips))
    return out


def export_shape(shape_name: str) -> tuple[Path, Path]:
    """int8 and fp32 packages of a random checkpoint of `shape_name` (bench/shapes.py),
    exported once into bench/.cache."""
    from bench.shapes import ensure_checkpoint, get_shape
    from edgeseq.export import export_checkpoint
    checkpoint = ensure_checkpoint(get_shape(shape_name))
    packages = []
    for quant in ("int8", "fp32"):
        out = CACHE / f"{shape_name}-{quant}"
        if not (out / "manifest.json").is_file():
            export_checkpoint(checkpoint, out, quant=quant, validate=False)
        packages.append(out)
    return packages[0], packages[1]


def _largest_error(got: list, want: list) -> float:
    """The largest error over the largest value, across an encoder's cross-attention K/V."""
    return max(float(abs(a - b).max() / abs(b).max()) for a, b in zip(got, want, strict=True))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("package", nargs="?", default="default")
    ap.add_argument("--shape", help="export a random checkpoint of this shape (int8 + fp32 "
                    "reference) and measure it on random inputs")
    ap.add_argument("--data", default="jfleg", choices=["jfleg", "random", "audio"],
                    help="audio: a Whisper package transcribing ../shared/data/audio")
    ap.add_argument("--limit", type=int, default=754)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    # JFLEG's longest corrections need ~150 tokens (bench.speculative_variants uses 160)
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--reference", help="the same checkpoint exported fp32")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--child", choices=list(SETUPS), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.shape:
        package, reference = export_shape(a.shape)
        a.package, a.reference, a.data = str(package), str(reference), "random"
        a.limit, a.max_new_tokens = min(a.limit, 100), 32
    if a.child:
        print(json.dumps(child(a.package, a.child, a.data, a.limit, a.threads, a.reference,
                               a.max_new_tokens)))
        return 0

    def args(setup: str) -> list[str]:
        extra = ["--reference", a.reference] if a.reference else []
        return [a.package, "--child", setup, "--data", a.data, "--limit", str(a.limit),
                "--threads", str(a.threads), "--max-new-tokens", str(a.max_new_tokens), *extra]
    runs = alternate("bench.integer_gemm", args, list(SETUPS), a.rounds)
    machine = machine_info(a.threads)
    from edgeseq.runtime.integer_gemm import integer_gemm_saturates, x86_cpu_flags
    default = "unsigned" if integer_gemm_saturates(x86_cpu_flags()) else "stored"
    rows = {}
    for setup, results in runs.items():
        row = {key: statistics.median(r[key] for r in results)
               for key in results[0] if key != "outputs"}
        if a.data == "jfleg":
            import edgeseq
            codec = edgeseq.load(a.package, threads=1).codec
            row["gleu"] = jfleg_gleu(codec, results[0]["outputs"], len(results[0]["outputs"]))
        row["outputs_same_every_round"] = all(r["outputs"] == results[0]["outputs"] for r in results)
        rows[setup] = row
    same = sum(x == y for x, y in zip(runs["stored"][0]["outputs"], runs["unsigned"][0]["outputs"]))
    print(f"\n{a.package}: {len(runs['stored'][0]['outputs'])} inputs ({a.data}), {a.threads} "
          f"threads, {a.rounds} rounds; CPU {machine['cpu_model']} {machine['cpu_flags']}; "
          f"the runtime picks '{default}' here")
    unit = "clip" if a.data == "audio" else "input"
    print(f"| weights | encoder ms | ms per {unit} | total s | RSS after load MB | peak RSS MB "
          "| GLEU | encoder error vs fp32 | transcripts as fp32 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for setup, r in rows.items():
        print(f"| {setup} | {r['encode_ms']:.3f} | {r['sentence_ms']:.2f} | {r['total_s']:.2f} "
              f"| {r['rss_loaded_mb']:.1f} | {r['peak_rss_mb']:.1f} | {r.get('gleu', float('nan')):.4f} "
              f"| {r.get('encoder_error_vs_fp32', float('nan')):.4f} "
              f"| {r.get('transcripts_as_fp32', '-')} |")
    ratio = rows["stored"]["encode_ms"] / rows["unsigned"]["encode_ms"]
    total = rows["stored"]["total_s"] / rows["unsigned"]["total_s"]
    print(f"unsigned vs stored: encoder {ratio:.2f}x, whole run {total:.2f}x faster; "
          f"{same}/{len(runs['stored'][0]['outputs'])} outputs identical")
    if a.out:
        write_json(a.out, "integer_gemm.json", {"machine": machine, "package": a.package,
                                                "data": a.data, "rounds": a.rounds, "rows": rows,
                                                "runtime_default": default, "identical_outputs": same,
                                                "encoder_speedup": ratio, "total_speedup": total})
    return 0


if __name__ == "__main__":
    sys.exit(main())
