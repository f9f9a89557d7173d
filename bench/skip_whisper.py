"""Lossy layer skipping on real Whisper weights, against the full model in the same run:
each exit layer, unified skipping at several ratios and confidence early exit (CALM) at
several thresholds; word error rate against the full model's transcript, decoder time and
decoder layers per pass, over the shared clips.

    python -m bench.skip_whisper PKG [--threads 2] [--out DIR]

Whisper was not trained with early exits: this shows what skipping costs a model that
was not (compare bench/skip.py on edgeseq's exit-trained grammar model)."""
from __future__ import annotations

import argparse
from pathlib import Path

from bench.skip import configs
from bench.whisper_clips import clips as shared_clips
from bench.whisper_clips import transcribe_clips


def main(argv: list[str] | None = None) -> int:
    import edgeseq
    from bench.machine import machine_info, write_json
    from edgeseq.quality import wer
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("package")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    engine = edgeseq.load(a.package, threads=a.threads)
    clips = shared_clips()
    transcribe_clips(engine, clips[:1], {})  # warm-up
    rows, reference = [], None
    for name, options in configs(engine.arch.decoder_layers, ratios=(1.5, 2.0)):
        res = transcribe_clips(engine, clips, options)
        reference = reference or res
        error = wer(reference.texts, res.texts)
        rows.append({"config": name, "wer_vs_full": error, "decoder_ms": res.decoder_ms,
                     "decoder_speedup": reference.decoder_ms / res.decoder_ms,
                     "total_speedup": reference.seconds / res.seconds,
                     "layers_per_pass": res.layers_per_pass})
        print(f"{name}: WER {error:.3f}, decoder {res.decoder_ms:.0f} ms", flush=True)
    lines = [f"{Path(a.package).name}, {len(clips)} clips, {a.threads} threads", "",
             "| configuration | WER vs full model | decoder speedup | total speedup | decoder layers per pass |",
             "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['config']} | {r['wer_vs_full']:.3f} | {r['decoder_speedup']:.2f}x | {r['total_speedup']:.2f}x "
              f"| {r['layers_per_pass']:.2f} |" for r in rows]
    print("\n".join(lines))
    if a.out:
        write_json(a.out, "skip_whisper.json", {"machine": machine_info(a.threads),
                                                "package": str(a.package), "rows": rows})
        (a.out / "skip_whisper.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
