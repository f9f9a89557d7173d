"""The `edgeseq` command line: export, generate, info (and more as features land).
All printing happens here; the library only returns and yields."""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from dataclasses import asdict
from pathlib import Path

from edgeseq.errors import EdgeseqError

QUANTS = ("fp32", "fp16", "int8", "int4")


def _cmd_export(args: argparse.Namespace) -> int:
    from edgeseq.export import export_checkpoint
    report = export_checkpoint(args.src, args.out, quant=args.quant, tokenizer=args.tokenizer,
                               validate=not args.no_validate, exit_heads=args.exit_heads,
                               int8_encoder=args.int8_encoder,
                               row_invariant=not args.no_row_invariant)
    print(f"wrote {report.package} ({report.quant.value}): {report.package_bytes / 1e6:.2f} MB on "
          f"disk for {report.parameter_bytes / 1e6:.2f} MB of parameters")
    for key, value in report.validation.items():
        print(f"  {key}: {value:.6g}" if isinstance(value, float) else f"  {key}: {value}")
    return 0


def _load(args: argparse.Namespace):
    import edgeseq
    return edgeseq.load(args.package, provider=args.provider, threads=args.threads,
                        spin=not args.no_spin, shared_pool=args.shared_pool,
                        fp32_decoder_products=DECODER_PRODUCTS[args.decoder_products],
                        even_decoder_rows=EVEN_ROWS[args.even_rows])


# --decoder-products: how an int8 decoder multiplies (runtime/decoder_products.py)
DECODER_PRODUCTS = {"auto": None, "int8": False, "fp32": True}
# --even-rows: decoder passes of an even number of rows where this CPU pairs rows
# (runtime/nbits_rows.py)
EVEN_ROWS = {"auto": None, "on": True, "off": False}


def _draft(value: str | None, args: argparse.Namespace):
    """--draft auto|none|input|layers|ngram|model:PKG"""
    if value in (None, "none"):
        return None
    if value.startswith("model:"):
        import edgeseq
        return edgeseq.load(value[len("model:"):], provider=args.provider, threads=args.threads,
                            shared_pool=args.shared_pool,
                            fp32_decoder_products=DECODER_PRODUCTS[args.decoder_products],
                            even_decoder_rows=EVEN_ROWS[args.even_rows])
    return value


def _layer_list(text: str) -> tuple[int, ...]:
    """--draft-skip 1,2 -> (1, 2)"""
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected layer indices like 1,2; got {text!r}") from None


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a TCP port is 0..65535, got {text!r}")
    return port


def _generation_options(args: argparse.Namespace) -> dict:
    opts = dict(max_new_tokens=args.max_new_tokens, min_new_tokens=args.min_new_tokens,
                num_beams=args.num_beams, draft=_draft(args.draft, args),
                max_draft=args.max_draft, draft_confidence=args.draft_confidence,
                memory_budget_mb=args.memory_budget, truncate_input=args.truncate_input)
    if args.exit_layer is not None:
        opts["exit_layer"] = args.exit_layer
    if args.draft_skip is not None:
        opts["draft_skip"] = args.draft_skip
    for name in ("skip_ratio", "exit_after", "exit_threshold", "no_repeat_ngram_size",
                 "rerank_source", "copy_bias"):
        if getattr(args, name) is not None:
            opts[name] = getattr(args, name)
    if args.exit_threshold is not None:
        opts["exit_measure"] = args.exit_measure
    if args.sample:
        opts["do_sample"] = True
    for name in ("temperature", "top_k", "top_p", "seed"):  # without --sample: refused
        if getattr(args, name) is not None:
            opts[name] = getattr(args, name)
    return opts


def _parse_input(text: str, ids: bool):
    if not ids:
        return text
    try:
        return [int(t) for t in text.replace(",", " ").split()]
    except ValueError as err:
        raise EdgeseqError(f"--ids expects whitespace/comma separated token ids: {err}") from err


def _result_line(result, as_json: bool, has_tokenizer: bool) -> str:
    if as_json:
        return json.dumps({"text": result.text, "token_ids": result.token_ids,
                           "source_kept": result.source_kept, "stats": asdict(result.stats)})
    return result.text if has_tokenizer else " ".join(map(str, result.token_ids))


def _generate_lines(engine, lines, args: argparse.Namespace, opts: dict) -> int:
    """TEXT "-": one input per line of stdin (UTF-8 bytes) and one output line for each,
    in order (JSON lines with --json). An empty line stays empty (null with --json), so
    outputs line up with inputs. One engine serves every line: a drafter's learned
    figures carry over."""
    for number, raw in enumerate(lines, 1):
        try:
            line = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as err:
            raise EdgeseqError(f"line {number} is not UTF-8 text ({err.reason} at byte "
                               f"{err.start})") from None
        if not line.strip():
            print("null" if args.json else "", flush=True)
            continue
        try:
            result = engine.generate(_parse_input(line, args.ids), **opts)
        except EdgeseqError as err:
            raise type(err)(f"line {number}: {err}") from err
        print(_result_line(result, args.json, engine.codec.has_tokenizer), flush=True)
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    engine = _load(args)
    opts = _generation_options(args)
    if args.text == "-":
        return _generate_lines(engine, sys.stdin.buffer, args, opts)
    source = _parse_input(args.text, args.ids)
    if args.json or args.num_beams > 1 or not engine.codec.has_tokenizer:
        print(_result_line(engine.generate(source, **opts), args.json, engine.codec.has_tokenizer))
        return 0
    for piece in engine.stream(source, **opts):
        print(piece, end="", flush=True)
    print()
    return 0


def _cmd_transcribe(args: argparse.Namespace) -> int:
    engine = _load(args)
    opts = dict(num_beams=args.num_beams, timestamps=args.timestamps, task=args.task, draft=args.draft)
    for name in ("skip_ratio", "exit_after", "exit_threshold"):
        if getattr(args, name) is not None:
            opts[name] = getattr(args, name)
    if args.language:
        opts["language"] = args.language
    result = engine.transcribe(args.audio, **opts)
    if args.json:
        print(json.dumps({"text": result.text, "language": result.language,
                          "segments": [asdict(seg) for seg in result.segments],
                          "stats": {**asdict(result.stats),
                                    "real_time_factor": result.stats.real_time_factor}}))
        return 0
    if args.timestamps:
        for seg in result.segments:
            print(f"[{seg.start:6.2f} -> {seg.end:6.2f}] {seg.text.strip()}")
    else:
        print(result.text.strip())
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from edgeseq.package_info import print_info
    return print_info(_load(args), as_json=args.json, placement=args.placement)


def _cmd_upgrade(args: argparse.Namespace) -> int:
    from edgeseq.export.row_invariant import upgrade_package
    for package in args.packages:
        done = upgrade_package(package)
        print(f"{package}: " + ("decoder made row-invariant" if done else "nothing to do"))
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from edgeseq.manifest import read_manifest
    from edgeseq.runtime.engine import resolve_package
    from edgeseq.manifest import verify_files
    from edgeseq.runtime.decoder import planned_weight_bytes
    from edgeseq.runtime.memory import MB, Request
    from edgeseq.runtime.spec_setup import check_draft_model
    engine = _load(args)
    # a draft model's manifest says what it holds: no sessions are needed to plan
    draft_bytes = 0
    if args.draft_model:
        directory = resolve_package(args.draft_model)
        other = read_manifest(directory)
        check_draft_model(engine.manifest, other)
        verify_files(directory, other)  # its graphs are parsed below
        draft_bytes = planned_weight_bytes(directory, other, engine.config)
    wanted = Request(batch=args.batch, source_length=args.source_length,
                     max_new_tokens=args.max_new_tokens, draft=args.max_draft,
                     draft_model_bytes=draft_bytes, even_rows=engine.runner.sessions.even_rows)
    chosen = engine.memory_plan(args.memory_budget, wanted,
                                other.arch if args.draft_model else None)
    if args.json:
        print(json.dumps(chosen.to_json(), indent=1))
        return 0
    r = chosen.request
    print(f"budget {args.memory_budget:.0f} MB: batch {r.batch}, source {r.source_length} tokens, "
          f"up to {r.max_new_tokens} new tokens, draft {r.draft} tokens per pass")
    for line in chosen.reduced:
        print(f"  reduced {line}")
    for part, value in chosen.estimate.to_json().items():
        print(f"  {part:>20}: {value / MB:8.1f} MB")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    try:  # packaged as edgeseq.demo, else mobile_demo/ of this source checkout
        import edgeseq.demo as demo
    except ModuleNotFoundError as err:
        if err.name != "edgeseq.demo":
            raise
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        import mobile_demo as demo
    models = Path(args.models)
    if args.tui:
        return demo.run_tui(models)
    try:
        server = demo.make_server(args.host, args.port, models)
    except OSError as err:  # address in use, no permission for the port
        raise EdgeseqError(f"cannot serve on {args.host}:{args.port}: {err}") from err
    with server:
        print(f"edgeseq demo: {server.url}  (models: {models}; Ctrl-C stops it)", flush=True)
        server.serve_forever()
    return 0


def _cmd_bench(rest: list[str]) -> int:
    """Delegate to bench/suite.py, which lives in the source checkout, not the wheel."""
    import subprocess
    root = Path(__file__).resolve().parents[1]
    if not (root / "bench" / "suite.py").is_file():
        raise EdgeseqError("edgeseq bench runs from a source checkout (git clone the project)")
    # run from the caller's folder (relative --out and --package are theirs), bench/ importable
    path = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "bench.suite", *rest],
                          env={**os.environ, "PYTHONPATH": path}).returncode


def _add_runtime_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("package", help='model package directory, or "default"')
    p.add_argument("--provider", default="cpu",
                   help="cpu, cuda, tensorrt, coreml, qnn, openvino, directml, xnnpack "
                        "(one the installed onnxruntime lacks falls back to cpu)")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: all cores)")
    p.add_argument("--no-spin", action="store_true",
                   help="idle threads sleep instead of spinning (better on busy cores)")
    p.add_argument("--decoder-products", choices=list(DECODER_PRODUCTS), default="auto",
                   help="an int8 decoder multiplies in int8, or in fp32 over its weights "
                        "dequantized at load (auto: fp32 for small decoders of packages "
                        "that recommend a drafter, on x86 CPUs without VNNI or whose int8 "
                        "products compute a lone row differently)")
    p.add_argument("--even-rows", choices=list(EVEN_ROWS), default="auto",
                   help="decoder passes of an even number of rows where this CPU's products "
                        "compute rows alike only in pairs, which keeps drafted tokens plain "
                        "greedy's (auto: for packages that recommend a drafter)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _add_generation_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--min-new-tokens", type=int, default=0)
    p.add_argument("--truncate-input", action="store_true",
                   help="keep the first tokens of an input longer than the model takes "
                        "(default: refuse it)")
    p.add_argument("--no-repeat-ngram-size", type=int, default=None, metavar="N",
                   help="no n-gram of N tokens twice in the output (default: the package's; 0: off)")
    p.add_argument("--rerank-source", action=argparse.BooleanOptionalAction, default=None,
                   help="keep the input when the model scores it above its own output "
                        "(default: the package's)")
    p.add_argument("--copy-bias", type=float, default=None, metavar="B",
                   help="editing models: add B to the score of the source token that copying "
                        "would write next (default: the package's; 0: off)")
    p.add_argument("--num-beams", type=int, default=1)
    p.add_argument("--sample", action="store_true", help="sample instead of greedy")
    p.add_argument("--temperature", type=float, default=None, help="with --sample (default 1.0)")
    p.add_argument("--top-k", type=int, default=None, help="with --sample (default 0: off)")
    p.add_argument("--top-p", type=float, default=None, help="with --sample (default 1.0: off)")
    p.add_argument("--seed", type=int, default=None, help="with --sample")
    p.add_argument("--draft", default="auto",
                   help="speculative decoding: auto (the package's recommended drafter, for "
                        "greedy search; the default model's is input), none, input, layers, "
                        "ngram, or model:PKG")
    p.add_argument("--max-draft", type=int, default=None,
                   help="most draft tokens per pass (default: 64 for input, else 8)")
    p.add_argument("--exit-layer", type=int, default=None,
                   help="--draft layers: fixed exit layer (default: adaptive)")
    p.add_argument("--draft-skip", type=_layer_list, default=None, metavar="I,J",
                   help="--draft layers: decoder layers (0-based) the drafts skip (SWIFT-style)")
    p.add_argument("--draft-confidence", type=float, default=0.0,
                   help="stop drafting when the draft's top probability falls below this")
    p.add_argument("--memory-budget", type=float, default=None, metavar="MB",
                   help="fit draft length, batch and length into this many MB (SpecMemo)")
    p.add_argument("--skip-ratio", type=float, default=None,
                   help="lossy: skip a balanced set of decoder layers (layers / layers run)")
    p.add_argument("--exit-after", type=int, default=None,
                   help="lossy: run only the first N decoder layers")
    p.add_argument("--exit-threshold", type=float, default=None,
                   help="lossy, per token (CALM): exit once confidence reaches this")
    p.add_argument("--exit-measure", choices=["top1", "margin"], default="top1")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeseq", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("export", help="checkpoint directory -> model package")
    p.add_argument("src", help="Hugging Face checkpoint directory (or hub id when online)")
    p.add_argument("out", help="package directory to write")
    p.add_argument("--quant", choices=QUANTS, default="int8")
    p.add_argument("--tokenizer", help="tokenizer.json for checkpoints without one")
    p.add_argument("--no-validate", action="store_true", help="skip the PyTorch comparison")
    p.add_argument("--exit-heads", help="directory with edgeseq_exits.json and exit heads trained "
                   "apart from the checkpoint (e.g. Whisper draft exits)")
    p.add_argument("--int8-encoder", choices=("rows", "blocks"), default="rows",
                   help="int8/int4 encoders: rows = per-row int8 integer GEMM (fastest on "
                   "CPUs), blocks = MatMulNBits in the package's bits (smallest; for CUDA, "
                   "whose provider lacks the integer GEMM)")
    p.add_argument("--no-row-invariant", action="store_true",
                   help="keep one-token passes on onnxruntime's one-row attention kernel "
                   "(faster plain greedy; greedy speculation may then differ from plain greedy "
                   "at near-ties)")
    p.set_defaults(func=_cmd_export)
    p = sub.add_parser("generate", help="generate from text (streams to the terminal)")
    _add_runtime_args(p)
    p.add_argument("text", help='input text (or token ids with --ids); "-": one input per '
                                'line of stdin, one output line each')
    p.add_argument("--ids", action="store_true", help="TEXT is token ids, e.g. '37 423 1'")
    _add_generation_args(p)
    p.set_defaults(func=_cmd_generate)
    sub.add_parser("bench", help="benchmark suites (see `edgeseq bench --help`)", add_help=False)
    p = sub.add_parser("upgrade", help="make packages exported before row-invariant decoders "
                       "row-invariant (greedy speculation then bitwise plain greedy)")
    p.add_argument("packages", nargs="+", type=Path)
    p.set_defaults(func=_cmd_upgrade)
    p = sub.add_parser("plan", help="what fits a memory budget, with predicted bytes")
    _add_runtime_args(p)
    p.add_argument("--memory-budget", type=float, required=True, metavar="MB")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--source-length", type=int, default=128)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--max-draft", type=int, default=8)
    p.add_argument("--draft-model", metavar="PKG", help="plan for drafting with this package")
    p.set_defaults(func=_cmd_plan)
    p = sub.add_parser("transcribe", help="speech to text with a Whisper package")
    _add_runtime_args(p)
    p.add_argument("audio", help="WAV file (16-bit PCM; any rate, mono or stereo)")
    p.add_argument("--language", help="language code; default: detected (multilingual models)")
    p.add_argument("--task", choices=["transcribe", "translate"], default="transcribe")
    p.add_argument("--num-beams", type=int, default=1)
    p.add_argument("--timestamps", action="store_true", help="print segments with times")
    p.add_argument("--draft", choices=["none", "layers"], default="none",
                   help="layers: self-speculative greedy decoding (same transcript, fewer passes)")
    p.add_argument("--skip-ratio", type=float, help="lossy: unified layer skipping")
    p.add_argument("--exit-after", type=int, help="lossy: run only the first N decoder layers")
    p.add_argument("--exit-threshold", type=float, help="lossy: CALM per-token early exit")
    p.set_defaults(func=_cmd_transcribe)
    p = sub.add_parser("info", help="describe a package and the providers its graphs run on")
    _add_runtime_args(p)
    p.add_argument("--placement", action="store_true",
                   help="profile one pass: which provider runs each operator (CPU fallbacks)")
    p.set_defaults(func=_cmd_info)
    p = sub.add_parser("demo", help="offline assistant: a local web page (or --tui terminal)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: localhost only)")
    p.add_argument("--port", type=_port, default=8000, help="0..65535 (0: any free port)")
    p.add_argument("--models", default="models", help="folder of model packages to offer")
    p.add_argument("--tui", action="store_true", help="plain terminal mode, for headless devices")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Run as the `edgeseq` program (argv from the command line), the process runs nothing
    # but edgeseq, so its sessions may share onnxruntime's process-wide thread pool
    # (runtime/providers.py: SharedThreadPool); called from Python, it leaves that alone.
    own_process = argv is None
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        return _cmd_bench(argv[1:])
    args = build_parser().parse_args(argv)
    args.shared_pool = own_process and not getattr(args, "no_spin", False)
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.formatwarning = lambda msg, cat, *a, **k: f"edgeseq: warning: {msg}\n"
        try:
            return args.func(args)
        except EdgeseqError as err:
            print(f"edgeseq: error: {err}", file=sys.stderr)
            return 2
        except (FileNotFoundError, ValueError) as err:
            print(f"edgeseq: error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 130


if __name__ == "__main__":
    sys.exit(main())
