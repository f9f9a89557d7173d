"""How often each exit of a Whisper package picks the full model's next token, on real
speech: per clip (first 30 s window) the package's own greedy transcript, then one
teacher-forced pass per exit over it. Run it on a package with draft exits and on the
same model without them to see what the trained heads add.

    python -m models.whisper_exits.agreement PKG [PKG ...] [--audio DIR]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

SHARED_AUDIO = Path(__file__).resolve().parents[3] / "shared" / "data" / "audio"


def exit_agreement(engine, wav: Path) -> dict[int, float]:
    """{exit k: fraction of generated positions where exit k's choice is the full model's}."""
    from runtime.audio import iter_windows, load_audio
    from runtime.decoder import LayerPlan
    from runtime.transcribe import TranscribeOptions, Transcriber
    transcriber = Transcriber(engine)
    _, features = next(iter_windows(load_audio(str(wav)), engine.arch.num_mel_bins))
    window = transcriber.decode_window(features, language="en")
    prompt = transcriber._prompt("en", TranscribeOptions())
    ids = np.array([prompt + window.tokens], np.int64)
    runner, layers = transcriber.runner, engine.arch.decoder_layers
    state = runner.encode_features(np.ascontiguousarray(features[None], np.float32))
    first = len(prompt) - 1

    def choices(plan) -> np.ndarray:
        return runner.step(ids, state, runner.new_cache(1, ids.shape[1]), plan)[0, first:].argmax(-1)

    full = choices(None)
    return {k: float((choices(LayerPlan.first(k, layers)) == full).mean()) for k in range(1, layers)}


def main(argv: list[str] | None = None) -> int:
    import edgeseq
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("packages", nargs="+")
    ap.add_argument("--audio", type=Path, default=SHARED_AUDIO)
    a = ap.parse_args(argv)
    clips = sorted(a.audio.glob("*.wav"))
    if not clips:
        raise SystemExit(f"no WAV files in {a.audio}")
    for package in a.packages:
        engine = edgeseq.load(package, threads=2)
        for wav in clips:
            found = exit_agreement(engine, wav)
            print(f"{Path(package).name} {wav.name}: " +
                  ", ".join(f"exit {k} {v:.2f}" for k, v in found.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
