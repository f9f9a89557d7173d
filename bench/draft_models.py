"""Draft model packages for `model:PKG` drafting in the benchmarks: a checkpoint's own
encoder and its first N decoder layers, exported as a package of their own.

    python -m bench.draft_models CHECKPOINT OUT --decoder-layers 2 [--quant int8]
        [--int8-encoder rows|blocks]

No smaller pretrained sibling (a Flan-T5-small for a Flan-T5-base, say) can be fetched
here, so the benchmarks draft with a truncated copy of the target. On a model trained
with early exits (the grammar model: every layer's output through the shared head) that
copy is a real draft model; on random weights it agrees with the target as much as the
target's own early layers do. Unlike layer drafting it pays for its own encoder run and
its own cache, as any separate draft model does."""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "spiece.model", "tokenizer_config.json",
                   "special_tokens_map.json", "generation_config.json")
# what truncated_checkpoint writes: a folder holding anything else is not replaced
WRITTEN = frozenset({"config.json", "model.safetensors", *TOKENIZER_FILES})


def _check_replaceable(folder: Path, checkpoint: Path) -> None:
    """A truncated checkpoint's folder is replaced whole: not the checkpoint or a folder
    holding it, nor a folder with files this script does not write."""
    from edgeseq.errors import ExportError
    target, source = folder.resolve(), checkpoint.resolve()
    if target == source or target in source.parents:
        raise ExportError(f"{folder} would replace the checkpoint {checkpoint}: choose another OUT")
    others = sorted(p.name for p in folder.iterdir() if p.name not in WRITTEN) \
        if folder.is_dir() else []
    if others:
        raise ExportError(f"{folder} holds {', '.join(others[:3])}, which this script does not "
                          "write: choose another OUT")


def truncated_checkpoint(checkpoint: Path, out: Path, decoder_layers: int) -> Path:
    """`checkpoint` (a Hugging Face seq2seq folder: T5, BART, Marian) with only its first
    `decoder_layers` decoder layers, saved with save_pretrained to `out`."""
    from transformers import AutoModelForSeq2SeqLM
    model = AutoModelForSeq2SeqLM.from_pretrained(checkpoint).eval()
    if hasattr(model.config, "num_decoder_layers"):  # T5: decoder.block
        decoder, field, count = model.decoder, "block", "num_decoder_layers"
    else:  # BART, Marian: model.decoder.layers
        decoder, field, count = model.model.decoder, "layers", "decoder_layers"
    layers = getattr(decoder, field)
    if not 0 < decoder_layers < len(layers):
        raise ValueError(f"decoder_layers must be 1..{len(layers) - 1} (the checkpoint has "
                         f"{len(layers)})")
    setattr(decoder, field, layers[:decoder_layers])
    setattr(model.config, count, decoder_layers)
    _check_replaceable(out, checkpoint)
    shutil.rmtree(out, ignore_errors=True)
    model.save_pretrained(out)
    for name in TOKENIZER_FILES:
        if (checkpoint / name).is_file():
            shutil.copy(checkpoint / name, out / name)
    return out


def draft_package(checkpoint: Path, out: Path, decoder_layers: int, quant: str = "int8",
                  int8_encoder: str = "rows") -> Path:
    """The exported draft package (the truncated checkpoint kept beside it).
    `int8_encoder`: as `edgeseq export --int8-encoder` ("blocks" for a CUDA session)."""
    from edgeseq.export import export_checkpoint
    from edgeseq.export.package import check_export_target
    check_export_target(out, checkpoint)  # before the truncated copy is written beside it
    truncated = truncated_checkpoint(checkpoint, out.with_name(out.name + "-hf"), decoder_layers)
    export_checkpoint(truncated, out, quant=quant, validate=True, int8_encoder=int8_encoder)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--decoder-layers", type=int, required=True)
    ap.add_argument("--quant", default="int8", choices=["fp32", "fp16", "int8", "int4"])
    ap.add_argument("--int8-encoder", choices=["rows", "blocks"], default="rows",
                    help="int8 encoder form, as edgeseq export (blocks for the CUDA provider)")
    a = ap.parse_args(argv)
    out = draft_package(a.checkpoint, a.out, a.decoder_layers, a.quant, a.int8_encoder)
    manifest = json.loads((out / "manifest.json").read_text())
    print(f"{out}: {manifest['arch']['decoder_layers']} decoder layers, {manifest['quant']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
