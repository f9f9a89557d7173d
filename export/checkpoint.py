"""Read a Hugging Face seq2seq checkpoint (a local directory, or a hub id when online)
into edgeseq's architecture spec, canonical numpy weights and special tokens."""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeseq.arch import ArchSpec
from edgeseq.errors import UnsupportedModelError
from edgeseq.manifest import SpecialTokens
from edgeseq.runtime.options import DRAFTERS
from .families import SUPPORTED_MODEL_TYPES, canonical_weights, spec_from_config


@dataclass
class Checkpoint:
    spec: ArchSpec
    weights: dict[str, np.ndarray]
    special: SpecialTokens
    suppress_tokens: list[int]
    forced_bos: int | None
    forced_eos: int | None
    tokenizer_file: Path | None
    torch_model: Any  # kept for validation against PyTorch
    source: str
    no_repeat_ngram_size: int = 0  # the checkpoint's generation default (0: off)
    rerank_source: bool = False  # generation_config's `rerank_source` (runtime/rerank.py)
    copy_bias: float = 0.0  # generation_config's `copy_bias` (runtime/source_align.py)
    # generation_config's `draft`: the drafter draft="auto" uses (runtime/options.py)
    draft: str | None = None


def _model_class(model_type: str):
    import transformers
    classes = {"t5": transformers.T5ForConditionalGeneration,
               "bart": transformers.BartForConditionalGeneration,
               "mbart": transformers.MBartForConditionalGeneration,
               "marian": transformers.MarianMTModel}
    return classes[model_type]


def _edgeseq_setting(src: str, gen, key: str, default):
    """One of edgeseq's own generation settings (rerank_source, copy_bias, draft). transformers
    drops unknown keys of a generation config it rebuilds from the model config, so the
    saved file is read first."""
    path = Path(src) / "generation_config.json"
    if path.is_file():
        return json.loads(path.read_text()).get(key, default)
    return getattr(gen, key, default)


def _recommended_drafter(value) -> str | None:
    """generation_config's `draft`, checked: one of the runtime's drafters or none."""
    if value is None or value in DRAFTERS:
        return value
    raise UnsupportedModelError(f"generation_config.json's draft must be one of {DRAFTERS} or "
                                f"null, got {value!r}")


def _find_tokenizer(src: str, explicit: Path | None, workdir: Path) -> Path | None:
    if explicit is not None:
        if not Path(explicit).is_file():
            raise FileNotFoundError(f"tokenizer file {explicit} does not exist")
        return Path(explicit)
    local = Path(src) / "tokenizer.json"
    if local.is_file():
        return local
    slow_files = ("tokenizer_config.json", "spiece.model", "source.spm", "vocab.json",
                  "sentencepiece.bpe.model")
    if Path(src).is_dir() and not any((Path(src) / f).is_file() for f in slow_files):
        return None  # nothing to convert; transformers would invent a default tokenizer
    try:  # a slow tokenizer that transformers can convert to tokenizer.json
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(src, use_fast=True)
        if getattr(tok, "is_fast", False):
            tok.backend_tokenizer.save(str(workdir / "tokenizer.json"))
            return workdir / "tokenizer.json"
    except (OSError, ValueError, ImportError, KeyError, TypeError):
        pass  # no usable tokenizer: the package is ids-only and says so
    return None


def load_checkpoint(src: str | Path, tokenizer: Path | None = None,
                    workdir: Path | None = None) -> Checkpoint:
    """workdir: where a converted tokenizer.json may be written (must outlive the export)."""
    from transformers import AutoConfig
    src = str(src)
    if Path(src).exists() and not (Path(src) / "config.json").is_file():
        raise UnsupportedModelError(f"{src} has no config.json; pass a Hugging Face "
                                    "checkpoint directory (save_pretrained output)")
    try:
        config = AutoConfig.from_pretrained(src)
    except OSError as err:
        raise UnsupportedModelError(f"cannot read a checkpoint from {src!r}: {err}") from err
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        spec_from_config(config)  # raises the error listing supported families
    model = _model_class(config.model_type).from_pretrained(src, dtype="float32").eval()
    state = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    spec = spec_from_config(config, state)
    gen = getattr(model, "generation_config", None)
    eos = config.eos_token_id if isinstance(config.eos_token_id, int) else config.eos_token_id[0]
    # transformers' rule: the decoder starts with decoder_start_token_id, else bos
    start = getattr(gen, "decoder_start_token_id", None)
    for candidate in (config.decoder_start_token_id, getattr(config, "bos_token_id", None)):
        start = candidate if start is None else start
    if start is None:
        raise UnsupportedModelError("the checkpoint names no decoder_start_token_id or bos_token_id")
    special = SpecialTokens(pad=config.pad_token_id, eos=eos, decoder_start=start,
                            unk=getattr(config, "unk_token_id", None),
                            bos=getattr(config, "bos_token_id", None))
    bad = [ids[0] for ids in (getattr(gen, "bad_words_ids", None) or []) if len(ids) == 1]
    suppress = sorted(set(bad) | set(getattr(gen, "suppress_tokens", None) or []))
    workdir = workdir or Path(tempfile.mkdtemp(prefix="edgeseq-tok-"))
    return Checkpoint(spec=spec, weights=canonical_weights(spec, state), special=special,
                      suppress_tokens=suppress,
                      forced_bos=getattr(gen, "forced_bos_token_id", None),
                      forced_eos=getattr(gen, "forced_eos_token_id", None),
                      no_repeat_ngram_size=int(getattr(gen, "no_repeat_ngram_size", 0) or 0),
                      rerank_source=bool(_edgeseq_setting(src, gen, "rerank_source", False)),
                      copy_bias=float(_edgeseq_setting(src, gen, "copy_bias", 0.0)),
                      draft=_recommended_drafter(_edgeseq_setting(src, gen, "draft", None)),
                      tokenizer_file=_find_tokenizer(src, tokenizer, workdir),
                      torch_model=model, source=src)
