"""Self-speculative layer drafting on real Whisper weights: transcription time against
plain greedy decoding of the same package in the same run (whole transcription, and the
decoder's share alone: drafting cannot speed the encoder up), identical transcripts, and
acceptance; each clip is transcribed by every configuration in turn, so each row also has
the median of the clips' paired ratios over the repeats with a 95% interval
(bench/paired_speedup.py) and what it shows of the 5% rule (holds, broken or unresolved).

    python -m bench.speculative_whisper PKG [--repeats 3] [--threads 2] [--exits 2,3]
        [--untrained PKG] [--provider cpu|cuda|...] [--audio DIR] [--out DIR]

With --untrained, the package without draft exits runs after the first one is freed,
with its own plain baseline (its transcripts are the same model's).

PKG is a Whisper package (e.g. base exported from the shared CTranslate2 weights); the
audio is ../shared/data/audio/*.wav. Configurations: plain, adaptive layer drafting
(exit layer and draft length picked on the fly), and each fixed exit layer given."""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from bench.paired_speedup import PairedSpeedup, repeat_paired_speedup
from bench.timing import turn_order
from bench.whisper_clips import AUDIO, ClipsRun, transcribe_clips
from bench.whisper_clips import clips as shared_clips


def _phase(engine, clips, configs: dict[str, dict], repeats: int, label: str = "") -> list[dict]:
    """Warm up, then time `configs` (the first is "plain") over `repeats`, each clip by every
    configuration in turn (the order turning clip by clip: drift on a shared machine favours
    none, and a clip's runs pair up); rows with speedups against this phase's own plain run."""
    for options in configs.values():  # warm-up; the adaptive controller learns here too
        transcribe_clips(engine, clips, options)
    times: dict[str, list[float]] = {name: [] for name in configs}
    decoding: dict[str, list[float]] = {name: [] for name in configs}  # decoder time only
    clip_runs: dict[str, list] = {name: [] for name in configs}  # per repeat and clip: pairs
    last = {}
    order = list(configs.items())
    for rep in range(repeats):
        runs: dict[str, list] = {name: [] for name in configs}
        for number, clip in enumerate(clips):
            for name, options in turn_order(order, rep, number):
                runs[name].append(transcribe_clips(engine, [clip], options))
                clip_runs[name].append(runs[name][-1])
        for name in configs:
            last[name] = ClipsRun.joined(runs[name])
            times[name].append(last[name].seconds)
            decoding[name].append(last[name].decoder_ms / 1e3)
            print(f"[{rep + 1}/{repeats}] {name}{label}: {last[name].seconds:.2f} s", flush=True)
    base, base_decoding = statistics.median(times["plain"]), statistics.median(decoding["plain"])
    rows = []
    for name in configs:
        med, res = statistics.median(times[name]), last[name]
        rows.append({"config": name + label, "seconds_median": med, "seconds_min": min(times[name]),
                     "seconds_max": max(times[name]), "speedup": base / med,
                     "decoder_seconds": statistics.median(decoding[name]),
                     "decoder_speedup": base_decoding / statistics.median(decoding[name]),
                     "real_time_factor": res.audio_s / med,
                     "identical": res.texts == last["plain"].texts,
                     "acceptance": res.acceptance, "decoder_passes": res.decoder_passes})
        if name != "plain":  # each clip's runs in a repeat, one after the other, pair up
            plain_runs, these = clip_runs["plain"], clip_runs[name]
            rows[-1]["paired"] = repeat_paired_speedup(
                [r.seconds for r in plain_runs], [r.seconds for r in these]).to_json()
            # the decoder alone, where drafting acts: the encoder's noise left out, and a
            # decoder no more than 5% slower keeps the whole transcription so
            rows[-1]["decoder_paired"] = repeat_paired_speedup(
                [r.decoder_ms for r in plain_runs], [r.decoder_ms for r in these]).to_json()
    return rows


def main(argv: list[str] | None = None) -> int:
    import gc

    import edgeseq
    from bench.machine import machine_info, write_json
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("package")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-draft", type=int, default=8)
    ap.add_argument("--exits", default="", help="fixed exit layers to try besides adaptive, e.g. 2,3")
    ap.add_argument("--untrained", help="the same model exported without draft exits: its plain "
                    "and adaptive layer drafting (exits through the model's own head) run next")
    ap.add_argument("--provider", default="cpu", help="execution provider (cpu, cuda, ...)")
    ap.add_argument("--audio", type=Path, default=AUDIO, help="folder of WAV clips")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    clips = shared_clips(a.audio)
    layers = {"draft": "layers", "max_draft": a.max_draft}
    configs = {"plain": {}, "layers (adaptive)": layers}
    for e in (int(x) for x in a.exits.split(",") if x):
        configs[f"layers (exit {e})"] = {**layers, "exit_layer": e}
    # one engine alive at a time: an idle engine's spinning threads would take the cores
    rows = _phase(edgeseq.load(a.package, threads=a.threads, provider=a.provider), clips, configs, a.repeats)
    if a.untrained:
        gc.collect()
        rows += _phase(edgeseq.load(a.untrained, threads=a.threads, provider=a.provider), clips,
                       {"plain": {}, "layers (adaptive)": layers}, a.repeats, ", untrained exits")
    audio_s = rows[0]["real_time_factor"] * rows[0]["seconds_median"]
    print(f"\n{Path(a.package).name}: {len(clips)} clips, {audio_s:.1f} s of audio, {a.provider}, "
          f"{a.threads} threads, "
          f"median of {a.repeats}\n")
    print("| configuration | seconds | speedup vs plain | paired speedup [95%] | 5% rule "
          "| decoder seconds | decoder speedup | decoder paired [95%] | 5% rule (decoder) "
          "| real-time factor | identical | acceptance | decoder passes |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        paired = PairedSpeedup.from_json(r["paired"]).cells() if "paired" in r else ["-", "-"]
        decoder = PairedSpeedup.from_json(r["decoder_paired"]).cells() \
            if "decoder_paired" in r else ["-", "-"]
        print(f"| {r['config']} | {r['seconds_median']:.2f} | {r['speedup']:.2f}x | "
              f"{' | '.join(paired)} "
              f"| {r['decoder_seconds']:.2f} | {r['decoder_speedup']:.2f}x | {' | '.join(decoder)} "
              f"| {r['real_time_factor']:.1f}x "
              f"| {'yes' if r['identical'] else 'no'} | {r['acceptance']:.2f} | {r['decoder_passes']} |")
    if a.out:
        write_json(a.out, "whisper_layers.json", {"machine": machine_info(a.threads),
                                                  "package": str(a.package), "audio_s": audio_s,
                                                  "provider": a.provider,
                                                  "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
