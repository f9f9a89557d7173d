"""What resampling audio to Whisper's 16 kHz costs, by source rate: the generic
polyphase path (a strided matrix-vector product per phase) against the decimator that
resample() takes when the target rate divides the source rate (48, 32, 96 kHz), on the
same random signal, alternating, median of repeats; and how far their outputs differ.
With --package (a Whisper package), also what a whole transcription of the shared 44 s
clip, brought to each rate first, takes either way (resampling included), and whether the
transcripts are the same.

    python -m bench.resample [--seconds 44] [--rates 48000,32000,96000] [--repeats 7]
        [--package PKG] [--out DIR]
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np

from bench.timing import alternating_seconds

TARGET_RATE = 16000


def compare(rate: int, seconds: float, repeats: int) -> dict:
    from edgeseq.runtime import audio
    if rate % TARGET_RATE:
        raise SystemExit(f"{rate} Hz: the decimator serves rates that are multiples of {TARGET_RATE}")
    signal = np.random.default_rng(0).uniform(-1, 1, int(rate * seconds)).astype(np.float32)
    down = rate // TARGET_RATE
    ways = {"generic": lambda: audio._resample_polyphase(signal.astype(np.float64), 1, down),
            "decimator": lambda: audio.resample(signal, rate, TARGET_RATE)}
    for run in ways.values():  # warm-up
        run()
    times, outputs = alternating_seconds(ways, repeats)
    generic, decimator = (statistics.median(times[n]) * 1e3 for n in ways)
    return {"rate": rate, "seconds": seconds, "generic_ms": generic, "decimator_ms": decimator,
            "speedup": generic / decimator,
            "max_abs_diff": float(np.abs(outputs["generic"] - outputs["decimator"]).max())}


def transcriptions(package: str, rate: int, repeats: int) -> dict:
    """The shared 44 s clip brought to `rate` (by the generic path, up), then transcribed
    with each way of resampling it back to 16 kHz, alternating, median of repeats."""
    from edgeseq.runtime import audio

    import edgeseq
    from bench.whisper_clips import AUDIO
    clip = AUDIO / "two_cities.wav"
    if not clip.is_file():
        raise SystemExit(f"--package needs the shared clip {clip}")
    engine = edgeseq.load(package, threads=2)
    signal = audio.resample(audio.load_audio(clip), TARGET_RATE, rate)
    down = rate // TARGET_RATE
    ways = {"generic": lambda: audio._resample_polyphase(signal.astype(np.float64), 1, down),
            "decimator": lambda: audio.resample(signal, rate, TARGET_RATE)}
    transcribe = {name: (lambda way=way: engine.transcribe(way()).text) for name, way in ways.items()}
    for run in transcribe.values():  # warm-up
        run()
    original = engine.transcribe(audio.load_audio(clip)).text
    times, texts = alternating_seconds(transcribe, repeats)
    generic, decimator = (statistics.median(times[n]) * 1e3 for n in ways)
    return {"rate": rate, "package": package, "generic_ms": generic, "decimator_ms": decimator,
            "speedup": generic / decimator, "same_transcript": texts["generic"] == texts["decimator"],
            # int8 Whisper flips near-tie words on differences of 1e-6 in the input
            "as_16k_original": {name: text == original for name, text in texts.items()}}


def main(argv: list[str] | None = None) -> int:
    from bench.machine import machine_info, write_json
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=44.0, help="signal length (the longer shared clip: 44 s)")
    ap.add_argument("--rates", default="48000,32000,96000")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--package", help="a Whisper package: also time whole transcriptions")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    rates = [int(r) for r in a.rates.split(",")]
    rows = [compare(r, a.seconds, a.repeats) for r in rates]
    print(f"{a.seconds:g} s of audio to {TARGET_RATE} Hz, median of {a.repeats}\n")
    print("| source rate | generic ms | decimator ms | speedup | max abs difference |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['rate']} | {r['generic_ms']:.1f} | {r['decimator_ms']:.1f} | {r['speedup']:.2f}x "
              f"| {r['max_abs_diff']:.1e} |")
    result = {"machine": machine_info(1), "rows": rows}
    if a.package:
        whole = result["transcriptions"] = [transcriptions(a.package, r, a.repeats) for r in rates]
        print(f"\nthe shared 44 s clip at each rate, transcribed by {a.package} (resampling included)\n")
        print("| source rate | generic ms | decimator ms | speedup | same transcript "
              "| as the 16 kHz clip's: generic / decimator |")
        print("| --- | --- | --- | --- | --- | --- |")
        yes = {True: "yes", False: "no"}
        for r in whole:
            print(f"| {r['rate']} | {r['generic_ms']:.0f} | {r['decimator_ms']:.0f} | {r['speedup']:.3f}x "
                  f"| {yes[r['same_transcript']]} | {yes[r['as_16k_original']['generic']]} / "
                  f"{yes[r['as_16k_original']['decimator']]} |")
    if a.out:
        write_json(a.out, "resample.json", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
