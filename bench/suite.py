"""`edgeseq bench`: run the benchmark suites in one go, each in its own process, into one
output folder (JSON tagged with machine, threads and package hashes; Markdown tables; PNG
plots). Suites:

  decode       edgeseq vs transformers, Optimum ORT, CTranslate2 (bench/decode.py)
  transcribe   Whisper: edgeseq vs faster-whisper on the same weights (bench/transcribe.py)
  speculative  drafters vs plain greedy on the same package (bench/speculative.py); each
               drafter, a one-layer draft model included (bench/draft_models.py), on the
               t5-small shape once the decode suite has exported it; layer drafting
               on Whisper base once the transcribe suite has (bench/speculative_whisper.py);
               and for an int8 package, its decoder in int8 against in fp32 over the same
               weights, the choice the runtime makes per CPU (bench/decoder_compute.py)
  skip         exits, unified skipping, confidence exit: quality vs speed (bench/skip.py)
  scaling      input length, output length, batch, threads (bench/scaling.py)"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from edgeseq.profiles import PROFILES

ROOT = Path(__file__).resolve().parents[1]
SUITES = ("decode", "transcribe", "speculative", "skip", "scaling")


WHISPER_BASE = ROOT / "bench" / ".cache" / "transcribe" / "base-int8"  # written by bench.transcribe
T5_SMALL = ROOT / "bench" / ".cache" / "t5-small"  # its hf checkpoint and edgeseq-int8: bench.decode


def commands(args: argparse.Namespace) -> dict[str, list[list[str]]]:
    out, threads, py = args.out, str(args.threads), sys.executable
    pkg = args.package
    quick = ["--quick"] if args.quick else []
    # as the README's table: every drafter, the noise control, each input by each in turn
    speculative = [py, "-m", "bench.speculative", pkg, "--threads", threads, "--out", str(out / "speculative"),
                   "--drafters", "none,input,oracle,ngram,layers,skip:1", "--interleave", "1"] \
        + (["--limit", "40", "--repeats", "1"] if args.quick else ["--repeats", "5"])
    if args.memory_budget:
        speculative += ["--memory-budget", str(args.memory_budget)]
    cmds = {
        "decode": [[py, "-m", "bench.decode", "--threads", threads, "--out", str(out / "decode"), *quick]],
        "transcribe": [[py, "-m", "bench.transcribe", "--threads", threads,
                        "--out", str(out / "transcribe"), *quick]],
        "speculative": [speculative],
        "skip": [[py, "-m", "bench.skip", pkg, "--threads", threads, "--out", str(out / "skip")]
                 + (["--limit", "40"] if args.quick else [])],
        "scaling": [[py, "-m", "bench.scaling", pkg, "--out", str(out / "scaling"), *quick]],
    }
    if args.memory_budget:  # the SpecMemo trade-off under the same budget
        cmds["speculative"].append([py, "-m", "bench.specmemo", pkg, "--budget", str(args.memory_budget),
                                    "--threads", threads, "--out", str(out / "specmemo")]
                                   + (["--limit", "32"] if args.quick else []))
    if (T5_SMALL / "edgeseq-int8").is_dir():  # each drafter, a draft model of its first layer too
        draft = T5_SMALL / "draft-dec1-int8"
        cmds["speculative"] += [
            [py, "-m", "bench.draft_models", str(T5_SMALL / "hf"), str(draft), "--decoder-layers", "1"],
            [py, "-m", "bench.speculative", str(T5_SMALL / "edgeseq-int8"), "--threads", threads,
             "--data", "ids", "--limit", "10" if args.quick else "40", "--interleave", "1",
             "--repeats", "1" if args.quick else "5",
             "--drafters", f"none,input,ngram,layers,skip:2+3,model:{draft}",
             "--out", str(out / "speculative-t5-small")],
            # what exact drafts cost where this CPU's int8 products pair rows (runtime/nbits_rows.py)
            [py, "-m", "bench.even_rows", str(T5_SMALL / "edgeseq-int8"), "--threads", threads,
             "--limit", "10" if args.quick else "40", "--rounds", "1" if args.quick else "3",
             "--out", str(out / "even-rows")]]
    if _quant(pkg) == "int8":  # whether fp32 decoder products pay on this device
        cmds["speculative"].append([py, "-m", "bench.decoder_compute", pkg, "--threads", threads,
                                    "--out", str(out / "decoder-compute")]
                                   + (["--limit", "40", "--rounds", "1"] if args.quick else []))
    if WHISPER_BASE.is_dir():
        cmds["speculative"].append([py, "-m", "bench.speculative_whisper", str(WHISPER_BASE), "--threads",
                                    threads, "--exits", "3,5", "--out", str(out / "speculative")]
                                   + (["--repeats", "1"] if args.quick else []))
    return cmds


def _quant(package: str) -> str | None:
    """A package's quantization, None where it cannot be read (the benchmark says why)."""
    from edgeseq.errors import EdgeseqError
    from edgeseq.manifest import read_manifest
    from edgeseq.runtime.engine import resolve_package
    try:
        return read_manifest(resolve_package(package)).quant
    except EdgeseqError:
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="edgeseq bench", description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--suite", default="all", choices=(*SUITES, "all"))
    ap.add_argument("--package", default="default", help="package for speculative/skip/scaling")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--memory-budget", type=float, default=None, metavar="MB")
    ap.add_argument("--profile", choices=sorted(PROFILES),
                    help="preset threads and memory budget that mimic a device")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--quick", action="store_true", help="smoke-test sizes")
    args = ap.parse_args(argv)
    # the suites run from the repository root: the caller's relative paths, made absolute
    args.out = args.out.resolve()
    if Path(args.package).exists():
        args.package = str(Path(args.package).resolve())
    if args.profile:
        profile = PROFILES[args.profile]
        args.threads = args.threads or profile.threads
        args.memory_budget = args.memory_budget or profile.memory_budget_mb
        args.out = args.out / args.profile
    args.threads = args.threads or 2
    args.out.mkdir(parents=True, exist_ok=True)
    chosen = SUITES if args.suite == "all" else (args.suite,)
    failed = []
    for name in chosen:
        for cmd in commands(args)[name]:  # built per suite: an earlier suite may add packages
            print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
            if subprocess.run(cmd, cwd=ROOT).returncode != 0:
                failed.append(name)
    if failed:
        print(f"suites that failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
