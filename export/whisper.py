"""Whisper checkpoints -> edgeseq package. Two sources: a Hugging Face directory
(WhisperForConditionalGeneration) and a CTranslate2 directory (model.bin, or the split
model.bin.part1..N, with config.json and tokenizer.json), read without ctranslate2.

Whisper's decoder is the text decoder graph of graphs.py (pre-norm, learned positions,
tied head, no k_proj bias). Its encoder is built here: two GELU convolutions (the second
halves 3000 mel frames to 1500 positions), stored sinusoidal positions, pre-norm layers,
a final norm, then every decoder layer's cross-attention K/V."""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from onnx import TensorProto

from edgeseq import names
from edgeseq.arch import Activation, ArchSpec, Family, Norm, Positions
from edgeseq.errors import UnsupportedModelError
from edgeseq.manifest import SpecialTokens

from .blocks import Blocks
from .onnx_builder import GraphBuilder, WeightStore
from .weight_formats import LinearEmitter, Quant

Source = str | os.PathLike | Sequence[str | os.PathLike]
Weights = dict[str, np.ndarray]
FLOAT = TensorProto.FLOAT
TIME_PRECISION = 0.02  # seconds per timestamp token: 1500 encoder positions per 30 s
INPUT_STRIDE = 2       # mel frames per encoder position


@dataclass
class WhisperCheckpoint:
    spec: ArchSpec
    weights: Weights          # canonical names, linear weights [in, out]
    whisper: dict[str, Any]   # the manifest's generation["whisper"] section
    special: SpecialTokens
    tokenizer_file: Path | None
    hf_config: Any            # transformers.WhisperConfig, for validation
    hf_state: Weights         # HF state-dict names, float32, for validation
    torch_model: Any          # WhisperForConditionalGeneration when read from HF, else None
    source: str


# -- recognising and reading sources ---------------------------------------------------
def _ct2_parts(directory: Path) -> bool:
    return (directory / "model.bin").is_file() or any(directory.glob("model.bin.part*"))


def is_whisper_source(src: Source) -> bool:
    """A CTranslate2 Whisper directory / part-file list, or a HF dir of model_type whisper."""
    if not isinstance(src, (str, os.PathLike)):
        return all(Path(p).name.startswith("model.bin") for p in src)
    path = Path(src)
    if path.is_dir() and _ct2_parts(path):
        return True
    config = path / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("model_type") == "whisper"
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return False


def _hf_state(model: Any) -> Weights:
    return {k: v.detach().float().numpy() for k, v in model.state_dict().items()}


def _read_hf(path: Path) -> tuple[Any, Weights, Any, dict[str, Any]]:
    from transformers import WhisperForConditionalGeneration
    model = WhisperForConditionalGeneration.from_pretrained(str(path), dtype="float32").eval()
    gen = model.generation_config
    extra = {"suppress_tokens": list(getattr(gen, "suppress_tokens", None) or []),
             "begin_suppress_tokens": list(getattr(gen, "begin_suppress_tokens", None) or []),
             "lang_to_id": dict(getattr(gen, "lang_to_id", None) or {}),
             "task_to_id": dict(getattr(gen, "task_to_id", None) or {}),
             "no_timestamps": getattr(gen, "no_timestamps_token_id", None),
             "sot_prev": getattr(gen, "prev_sot_token_id", None),
             "sot": gen.decoder_start_token_id, "eot": gen.eos_token_id,
             "is_multilingual": getattr(gen, "is_multilingual", None)}
    return model.config, _hf_state(model), model, extra


def _read_ct2(src: Source) -> tuple[Any, Weights, None, dict[str, Any], list[Path]]:
    from transformers import WhisperConfig

    from .ct2_format import (
        ct2_whisper_to_hf_state_dict,
        hf_whisper_config_from_ct2,
        open_ct2_whisper_dir,
    )
    model, config_json = open_ct2_whisper_dir(src)
    dirs = [Path(src)] if isinstance(src, (str, os.PathLike)) else \
        list(dict.fromkeys(Path(p).parent for p in src))
    vocab_file = next((d / "vocabulary.txt" for d in dirs if (d / "vocabulary.txt").is_file()), None)
    vocabulary = vocab_file.read_text(encoding="utf-8").splitlines() if vocab_file else None
    kwargs = hf_whisper_config_from_ct2(model, config_json, vocabulary)
    extra = {"suppress_tokens": kwargs["suppress_tokens"],
             "begin_suppress_tokens": kwargs["begin_suppress_tokens"],
             "sot": kwargs["decoder_start_token_id"], "eot": kwargs["eos_token_id"]}
    return WhisperConfig(**kwargs), ct2_whisper_to_hf_state_dict(model), None, extra, dirs


def _vocabulary(tokenizer: Path | None, dirs: list[Path]) -> dict[str, int]:
    if tokenizer is not None:
        from tokenizers import Tokenizer
        return Tokenizer.from_file(str(tokenizer)).get_vocab(with_added_tokens=True)
    vocab_file = next((d / "vocabulary.txt" for d in dirs if (d / "vocabulary.txt").is_file()), None)
    if vocab_file is None:
        return {}
    return {t: i for i, t in enumerate(vocab_file.read_text(encoding="utf-8").splitlines())}


def _token_ids(vocab: dict[str, int], extra: dict[str, Any], vocab_size: int,
               n_mels: int, max_target: int) -> dict[str, Any]:
    """The manifest's Whisper token section: from the tokenizer's special tokens when it
    has them, else from a Hugging Face generation config."""
    def tok(*texts: str, fallback: int | None = None) -> int | None:
        return next((vocab[t] for t in texts if t in vocab), fallback)

    sot = tok("<|startoftranscript|>", fallback=extra.get("sot"))
    eot = tok("<|endoftext|>", fallback=extra.get("eot"))
    no_ts = tok("<|notimestamps|>", fallback=extra.get("no_timestamps"))
    task = extra.get("task_to_id") or {}
    transcribe = tok("<|transcribe|>", fallback=task.get("transcribe"))
    translate = tok("<|translate|>", fallback=task.get("translate"))
    if None in (sot, eot, no_ts, transcribe, translate):
        raise UnsupportedModelError(
            "cannot find Whisper's special tokens (<|startoftranscript|>, <|notimestamps|>, "
            "<|transcribe|>, ...): put the model's tokenizer.json next to the checkpoint, or "
            "use a generation_config.json with no_timestamps_token_id and task_to_id")
    langs = {t[2:-2]: i for t, i in vocab.items()
             if sot < i < min(transcribe, translate) and t.startswith("<|") and t.endswith("|>")}
    if not langs:
        langs = {t[2:-2]: int(i) for t, i in (extra.get("lang_to_id") or {}).items()}
    multilingual = extra.get("is_multilingual")
    if multilingual is None:
        multilingual = vocab_size >= 51865 or (vocab_size < 51864 and len(langs) > 1)
    return {"sot": sot, "eot": eot, "no_timestamps": no_ts, "transcribe": transcribe,
            "translate": translate, "sot_prev": tok("<|startofprev|>", fallback=extra.get("sot_prev")),
            "no_speech": tok("<|nospeech|>", "<|nocaptions|>"), "timestamp_begin": no_ts + 1,
            "languages": dict(sorted(langs.items(), key=lambda kv: kv[1])),
            "is_multilingual": bool(multilingual),
            "suppress_tokens": sorted(int(t) for t in extra.get("suppress_tokens") or []),
            "begin_suppress_tokens": [int(t) for t in extra.get("begin_suppress_tokens") or []],
            "n_mels": n_mels, "max_target_positions": max_target,
            "time_precision": TIME_PRECISION, "input_stride": INPUT_STRIDE}


def spec_from_whisper_config(c: Any) -> ArchSpec:
    if c.encoder_attention_heads != c.decoder_attention_heads or \
            c.encoder_ffn_dim != c.decoder_ffn_dim:
        raise UnsupportedModelError("Whisper encoder and decoder must share head count and FFN size")
    if c.activation_function != "gelu":
        raise UnsupportedModelError(f"Whisper activation {c.activation_function!r}; only gelu is supported")
    head_dim = c.d_model // c.decoder_attention_heads
    return ArchSpec(
        family=Family.WHISPER, d_model=c.d_model, num_heads=c.decoder_attention_heads,
        head_dim=head_dim, d_ff=c.decoder_ffn_dim, encoder_layers=c.encoder_layers,
        decoder_layers=c.decoder_layers, vocab_size=c.vocab_size, norm=Norm.LAYER, norm_eps=1e-5,
        pre_norm=True, activation=Activation.GELU, gated_ffn=False, positions=Positions.LEARNED,
        position_offset=0, max_source_positions=c.max_source_positions,
        max_target_positions=c.max_target_positions, attention_scale=head_dim ** -0.5,
        embed_scale=float(np.sqrt(c.d_model)) if c.scale_embedding else 1.0,
        embedding_norm=False, final_norm=True, tied_head=bool(c.tie_word_embeddings),
        head_scale=1.0, final_logits_bias=False, linear_bias=True, key_bias=False,
        num_mel_bins=c.num_mel_bins)


def canonical_whisper_weights(spec: ArchSpec, s: Weights) -> Weights:
    """HF Whisper state dict (numpy) -> canonical names; linear weights stored [in, out]."""
    w: Weights = {"embed.tokens": s["model.decoder.embed_tokens.weight"],
                  "dec.pos": s["model.decoder.embed_positions.weight"],
                  "enc.pos": s["model.encoder.embed_positions.weight"]}
    if not spec.tied_head:
        w["lm_head.w"] = np.ascontiguousarray(s["proj_out.weight"].T)
    for conv in ("conv1", "conv2"):
        w[f"enc.{conv}.w"] = s[f"model.encoder.{conv}.weight"]
        w[f"enc.{conv}.b"] = s[f"model.encoder.{conv}.bias"]

    def linear(src: str, dst: str) -> None:
        w[f"{dst}.w"] = np.ascontiguousarray(s[f"{src}.weight"].T)
        if f"{src}.bias" in s:  # k_proj has none
            w[f"{dst}.b"] = s[f"{src}.bias"]

    def norm(src: str, dst: str) -> None:
        w[f"{dst}.w"], w[f"{dst}.b"] = s[f"{src}.weight"], s[f"{src}.bias"]

    for side, n_layers in (("enc", spec.encoder_layers), ("dec", spec.decoder_layers)):
        stack = "model.encoder" if side == "enc" else "model.decoder"
        norm(f"{stack}.layer_norm", f"{side}.final_norm")
        for i in range(n_layers):
            src, dst = f"{stack}.layers.{i}", f"{side}.{i}"
            attentions = [("self_attn", "self")] + ([("encoder_attn", "cross")] if side == "dec" else [])
            for hf_name, name in attentions:
                for p, hf in zip("qkvo", ("q_proj", "k_proj", "v_proj", "out_proj")):
                    linear(f"{src}.{hf_name}.{hf}", f"{dst}.{name}.{p}")
                norm(f"{src}.{hf_name}_layer_norm", f"{dst}.{name}_norm")
            linear(f"{src}.fc1", f"{dst}.ffn.fc1")
            linear(f"{src}.fc2", f"{dst}.ffn.fc2")
            norm(f"{src}.final_layer_norm", f"{dst}.ffn_norm")
    return w


def load_whisper(src: Source, tokenizer: Path | None = None) -> WhisperCheckpoint:
    """Read a HF Whisper directory or a CTranslate2 Whisper directory / part-file list."""
    if tokenizer is not None and not tokenizer.is_file():
        raise FileNotFoundError(f"tokenizer file {tokenizer} does not exist")
    single = isinstance(src, (str, os.PathLike))
    if single and not Path(src).exists():
        raise UnsupportedModelError(f"{src} does not exist")
    if single and not _ct2_parts(Path(src)):
        config, state, model, extra = _read_hf(Path(src))
        dirs = [Path(src)]
    else:
        config, state, model, extra, dirs = _read_ct2(src)
    tokenizer = tokenizer or next((d / "tokenizer.json" for d in dirs
                                   if (d / "tokenizer.json").is_file()), None)
    spec = spec_from_whisper_config(config)
    if spec.num_mel_bins not in (80, 128):
        raise UnsupportedModelError(f"num_mel_bins {spec.num_mel_bins}: Whisper uses 80 or 128")
    tokens = _token_ids(_vocabulary(tokenizer, dirs), extra, spec.vocab_size,
                        spec.num_mel_bins, spec.max_target_positions)
    special = SpecialTokens(pad=tokens["eot"], eos=tokens["eot"], decoder_start=tokens["sot"],
                            bos=tokens["eot"])
    return WhisperCheckpoint(spec, canonical_whisper_weights(spec, state), tokens, special,
                             tokenizer, config, state, model, ";".join(map(str, dirs)))


# -- the encoder graph -----------------------------------------------------------------
def _conv(g: GraphBuilder, x: str, name: str, stride: int, quant: Quant) -> str:
    """Conv1d, kernel 3, padding 1; weights stay float (fp16 stored for fp16 packages)."""
    if quant == Quant.FP16:
        if f"{name}.w_fp16" not in g.store:
            g.store.put(f"{name}.w_fp16", g.store.get(f"{name}.w").astype(np.float16))
        w = g.op("Cast", g.weight(f"{name}.w_fp16"), to=FLOAT)
    else:
        w = g.weight(f"{name}.w")
    return g.op("Conv", x, w, g.weight(f"{name}.b"), kernel_shape=[3], pads=[1, 1],
                strides=[stride])


def build_whisper_encoder(spec: ArchSpec, store: WeightStore, quant: Quant,
                          int8_rows: bool = True):
    """input_features float32 [batch, mels, 2 * max_source_positions] -> cross K/V
    [batch, heads, max_source_positions, head_dim] for every decoder layer."""
    g = GraphBuilder(store)
    b = Blocks(spec, LinearEmitter(quant, many_rows=int8_rows))
    frames = 2 * spec.max_source_positions
    feats = g.add_input(names.ENC_INPUT_FEATURES, FLOAT, ["batch", spec.num_mel_bins, frames])
    x = b.activation(g, _conv(g, feats, "enc.conv1", 1, quant))
    x = b.activation(g, _conv(g, x, "enc.conv2", 2, quant))
    x = g.op("Add", g.op("Transpose", x, perm=[0, 2, 1]), g.weight("enc.pos"))
    for i in range(spec.encoder_layers):
        def self_attention(h: str, i: int = i) -> str:
            q, k, v = b.fused(g, h, f"enc.{i}.self", "qkv")
            return b.linear(g, b.attention(g, q, k, v, ""), f"enc.{i}.self.o")
        x = b.residual(g, x, f"enc.{i}.self_norm", self_attention)
        x = b.residual(g, x, f"enc.{i}.ffn_norm", lambda h, i=i: b.ffn(g, h, f"enc.{i}.ffn"))
    x = b.norm(g, x, "enc.final_norm")
    shape = ["batch", spec.num_heads, spec.max_source_positions, spec.head_dim]
    for i in range(spec.decoder_layers):
        k, v = (b.split_heads(g, t) for t in b.fused(g, x, f"dec.{i}.cross", "kv"))
        g.add_output(k, names.cross_key(i), FLOAT, shape)
        g.add_output(v, names.cross_value(i), FLOAT, shape)
    return g.model("edgeseq_whisper_encoder"), list(g.used_weights)


# -- export ----------------------------------------------------------------------------
def _add_exit_heads(src: Path, spec: ArchSpec, store: WeightStore) -> dict[str, Any]:
    """Put the draft exits' heads into `store`; returns the manifest's `exits` entry."""
    from . import read_exits
    from .exit_heads import EXITS_FILE, exit_head_key, load_exit_heads
    if not (src / EXITS_FILE).is_file():
        raise UnsupportedModelError(f"--exit-heads {src} has no {EXITS_FILE}")
    heads = load_exit_heads(src, spec.decoder_layers, spec.d_model, spec.vocab_size)
    if not heads:
        raise UnsupportedModelError(f"{src / EXITS_FILE} lists no exit heads of their own")
    for name, value in heads.items():
        store.put(name, value)
    exits = read_exits(src, spec.decoder_layers)
    exits["draft_vocab"] = {str(k): int(heads[f"{exit_head_key(k)}.w"].shape[1])
                            for k in exits["layers"] if f"{exit_head_key(k)}.w" in heads}
    return exits



def export_whisper(src: Source, out: str | Path, quant: str | Quant = Quant.INT8,
                   validate: bool = True, validation_audio: str | Path | None = None,
                   tokenizer: str | Path | None = None, exit_heads: str | Path | None = None,
                   int8_encoder: str = "rows", row_invariant: bool = True):
    """Export a Whisper checkpoint to an edgeseq package at `out`; returns ExportReport.

    `src`: a HF directory, a CTranslate2 directory (model.bin or model.bin.part1..N), or
    the list of CTranslate2 part files in order. `tokenizer`: a tokenizer.json to use
    instead of the one beside the checkpoint. Validation against transformers' PyTorch
    Whisper on the same weights: fp32 must match within whisper_validate.FP32_TOLERANCE
    (else ExportValidationError); quantized packages report greedy agreement.
    `exit_heads`: a directory with edgeseq_exits.json and separate exit heads for drafting
    (models/whisper_exits/train.py); the model's own weights and output are unchanged.
    `int8_encoder`, `row_invariant`: as in export_checkpoint."""
    from . import write_validated
    from .graphs import build_decoder
    from .row_invariant import applies_to
    from .whisper_validate import validate_whisper_package

    from . import check_int8_encoder
    from .package import check_export_target
    check_export_target(out, src)  # as export_checkpoint: before the work
    quant = Quant(quant)
    check_int8_encoder(int8_encoder)
    row_invariant = row_invariant and applies_to(quant.value)
    ck = load_whisper(src, Path(tokenizer) if tokenizer else None)
    store = WeightStore(ck.weights)
    exits = {"exit_trained": False, "layers": list(range(1, ck.spec.decoder_layers + 1))}
    if exit_heads is not None:
        exits = _add_exit_heads(Path(exit_heads), ck.spec, store)
    graphs = {names.ENCODER_FILE: build_whisper_encoder(ck.spec, store, quant,
                                                        int8_encoder == "rows"),
              names.DECODER_FILE: build_decoder(ck.spec, store, quant,
                                                row_invariant=row_invariant)}
    fields = {"arch": ck.spec, "quant": quant.value, "special": ck.special, "source": ck.source,
              "generation": {"suppress_tokens": [], "forced_bos": None, "forced_eos": None,
                             "whisper": ck.whisper},
              "exits": exits, "row_invariant_decoder": row_invariant}
    out = Path(out)
    return write_validated(
        out, graphs, store, fields, ck.tokenizer_file, quant,
        (lambda: validate_whisper_package(ck, out, quant, validation_audio)) if validate else None)
