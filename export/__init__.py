"""Checkpoint -> model package. Needs the [export] extra (torch, transformers, onnx)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import json
import tempfile

from edgeseq import names
from edgeseq.errors import OptionsError, UnsupportedModelError

from .exit_heads import EXITS_FILE, load_exit_heads
from .weight_formats import Quant

__all__ = ["ExportReport", "Quant", "export_checkpoint"]


@dataclass
class ExportReport:
    package: Path
    quant: Quant
    parameter_bytes: int
    package_bytes: int
    validation: dict = field(default_factory=dict)


def write_validated(out: Path, graphs: dict, store, fields: dict, tokenizer: Path | None,
                    quant: Quant, validate: Callable[[], dict] | None) -> ExportReport:
    """Write the package and run `validate` on it (None: not validated), its report kept
    in the manifest. Failed or interrupted, no unvalidated package is left, and the
    package there before is kept (package.replacing)."""
    from .package import parameter_bytes, record_validation, replacing, write_package
    with replacing(out):
        write_package(out, graphs, store, fields, tokenizer)
        used = [n for _, weights in graphs.values() for n in weights]
        report = ExportReport(package=out, quant=quant,
                              parameter_bytes=parameter_bytes(store, used),
                              package_bytes=sum(p.stat().st_size for p in out.iterdir()))
        if validate is not None:
            report.validation = validate()
            record_validation(out, report.validation)
    return report


def read_exits(src, decoder_layers: int) -> dict:
    """Every decoder layer is an exit through the shared final norm + head; the manifest
    says whether the model was trained for it (LayerSkip-style exit losses)."""
    path = Path(src) / EXITS_FILE
    if path.is_file():
        info = json.loads(path.read_text())
        layers = [int(e) for e in info.get("exits", [])]
        if not layers or min(layers) < 1 or max(layers) > decoder_layers:
            raise ValueError(f"{path}: exits must be decoder layers 1..{decoder_layers}")
        return {"exit_trained": bool(info.get("exit_trained", True)),
                "shared_head": bool(info.get("shared_head", True)), "layers": layers}
    return {"exit_trained": False, "shared_head": True,
            "layers": list(range(1, decoder_layers + 1))}


def export_checkpoint(src: str | Path, out: str | Path, quant: str | Quant = Quant.INT8,
                      tokenizer: str | Path | None = None, validate: bool = True,
                      exit_heads: str | Path | None = None,
                      int8_encoder: str = "rows", row_invariant: bool = True) -> ExportReport:
    """Export a Hugging Face seq2seq checkpoint to an edgeseq package at `out`.

    Validation compares the package with PyTorch: fp32 must match logits within
    `validate.FP32_TOLERANCE` (else ExportValidationError); quantized packages report
    greedy agreement with PyTorch fp32. Whisper checkpoints (HF or CTranslate2) go to
    whisper.export_whisper. `exit_heads`: a directory with edgeseq_exits.json and exit
    heads trained apart from the checkpoint (default: the checkpoint's own, if any).
    `int8_encoder`: "rows" (int8 and int4 packages' encoders multiply per-row int8
    activations and int8 weights in an integer GEMM: fastest on CPUs) or "blocks"
    (MatMulNBits in the package's own bits: smallest, and what onnxruntime's CUDA provider
    runs; it has no kernel for the integer GEMM, see weight_formats). `row_invariant`
    (fp32, fp16, int8): attention queries of two rows or more, so greedy speculation is
    bitwise plain greedy (export/row_invariant.py); False keeps one-token passes on
    onnxruntime's faster one-row kernel, and speculation may then differ from plain greedy
    at near-ties."""
    from .package import check_export_target
    from .row_invariant import applies_to
    from .whisper import export_whisper, is_whisper_source
    if is_whisper_source(src):
        return export_whisper(src, out, quant, validate=validate, tokenizer=tokenizer,
                              exit_heads=exit_heads, int8_encoder=int8_encoder,
                              row_invariant=row_invariant)
    check_export_target(out, src)  # before minutes of work, not when writing
    quant = Quant(quant)
    check_int8_encoder(int8_encoder)
    with tempfile.TemporaryDirectory(prefix="edgeseq-export-") as work:
        return _export(src, Path(out), quant, tokenizer, validate, Path(work),
                       Path(exit_heads) if exit_heads else None, int8_encoder == "rows",
                       row_invariant and applies_to(quant.value))


def _warn_if_tokenizer_outgrows(tokenizer: Path | None, vocab_size: int) -> None:
    """A tokenizer with more tokens than the model has embeddings: some text would get ids
    the model cannot read (refused then, naming the tokenizer). A warning, not an error:
    a few checkpoints ship such tokenizers and most text never meets those tokens."""
    if tokenizer is None:
        return
    import warnings

    from tokenizers import Tokenizer
    tokens = Tokenizer.from_file(str(tokenizer)).get_vocab_size(with_added_tokens=True)
    if tokens > vocab_size:
        warnings.warn(f"{tokenizer} has {tokens} tokens but the model only {vocab_size}: is it "
                      "this model's tokenizer?", RuntimeWarning, stacklevel=3)


def check_int8_encoder(value: str) -> None:
    if value not in INT8_ENCODERS:
        raise OptionsError(f"int8_encoder must be one of {INT8_ENCODERS}, got {value!r}")


INT8_ENCODERS = ("rows", "blocks")


def _export(src, out: Path, quant: Quant, tokenizer, validate: bool, work: Path,
            exit_heads: Path | None, int8_rows: bool, row_invariant: bool) -> ExportReport:
    from .checkpoint import load_checkpoint
    from .graphs import build_decoder, build_encoder
    from .onnx_builder import WeightStore
    from .package import parameter_bytes
    from .validate import validate_package

    ck = load_checkpoint(src, Path(tokenizer) if tokenizer else None, work)
    _warn_if_tokenizer_outgrows(ck.tokenizer_file, ck.spec.vocab_size)
    store = WeightStore(ck.weights)
    if exit_heads is not None and not (exit_heads / EXITS_FILE).is_file():
        raise UnsupportedModelError(f"--exit-heads {exit_heads} has no {EXITS_FILE}")
    exits_dir = exit_heads or src
    for name, head in load_exit_heads(exits_dir, ck.spec.decoder_layers, ck.spec.d_model,
                                      ck.spec.vocab_size).items():
        store.put(name, head)
    graphs = {names.ENCODER_FILE: build_encoder(ck.spec, store, quant, int8_rows),
              names.DECODER_FILE: build_decoder(ck.spec, store, quant,
                                                row_invariant=row_invariant)}
    graph_bytes = {f: parameter_bytes(store, used) for f, (_, used) in graphs.items()}
    fields = dict(arch=ck.spec, quant=quant.value, special=ck.special, source=str(ck.source),
                  generation={"suppress_tokens": ck.suppress_tokens, "forced_bos": ck.forced_bos,
                              "forced_eos": ck.forced_eos,
                              "no_repeat_ngram_size": ck.no_repeat_ngram_size,
                              "rerank_source": ck.rerank_source, "copy_bias": ck.copy_bias,
                              "draft": ck.draft},
                  graph_weight_bytes=graph_bytes,
                  exits=read_exits(exits_dir, ck.spec.decoder_layers),
                  row_invariant_decoder=row_invariant)
    return write_validated(out, graphs, store, fields, ck.tokenizer_file, quant,
                           (lambda: validate_package(ck, out, quant)) if validate else None)
