"""Early-exit models with a head of their own per exit.

LayerSkip-style models share the final norm and LM head across exits; others train a
separate projection per exit. Such a checkpoint ships them beside its weights:
`edgeseq_exits.json` says `"shared_head": false` and names a safetensors file
(`"heads_file"`, default `exit_heads.safetensors`) holding `exit_heads.{k}.weight`
[vocab, d_model] for every listed exit k below the last layer. An exit's logits are
`exit_heads.k(final_norm(h_k))`: the final norm is shared, the decoder's head scaling is
not applied (the projection is the exit's own); the last exit is the model's own head.

A head may cover only part of the vocabulary (a draft head: FR-Spec's frequent tokens):
`exit_heads.{k}.vocab` int [N] lists its token ids and the weight is [N, d_model]. Such an
exit's logits are -1e9 for every other token, so only the listed tokens can be drafted;
the head reads N rows instead of the whole vocabulary's.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgeseq.errors import UnsupportedModelError

EXITS_FILE = "edgeseq_exits.json"  # written by models trained with early-exit losses
DEFAULT_HEADS_FILE = "exit_heads.safetensors"


def exit_head_key(k: int) -> str:
    """The canonical weight name of exit k's projection ([d_model, vocab], as heads are)."""
    return f"exit_head.{k}"


def load_exit_heads(src: str | Path, decoder_layers: int, d_model: int,
                    vocab: int) -> dict[str, np.ndarray]:
    """{canonical name `exit_head.k.w`: [d_model, N] (and `exit_head.k.vocab`: int64 [N]
    for a head over part of the vocabulary)} for a checkpoint with separate exit heads;
    {} when its exits share the final head (or it lists none)."""
    path = Path(src) / EXITS_FILE
    if not path.is_file():
        return {}
    info = json.loads(path.read_text())
    if info.get("shared_head", True):
        return {}
    heads_path = Path(src) / info.get("heads_file", DEFAULT_HEADS_FILE)
    if not heads_path.is_file():
        raise UnsupportedModelError(f"{path.name} says the exits have heads of their own, "
                                    f"but {heads_path.name} is missing")
    from safetensors.numpy import load_file
    tensors = load_file(str(heads_path))
    heads = {}
    for k in sorted(int(e) for e in info.get("exits", [])):
        if k >= decoder_layers:
            continue  # the last exit is the model's own head
        weight = tensors.get(f"exit_heads.{k}.weight")
        if weight is None:
            raise UnsupportedModelError(f"{heads_path.name} has no exit_heads.{k}.weight for exit {k}")
        ids = tensors.get(f"exit_heads.{k}.vocab")
        rows = vocab if ids is None else len(ids)
        if ids is not None and (ids.ndim != 1 or len(np.unique(ids)) != len(ids)
                                or ids.min(initial=0) < 0 or ids.max(initial=0) >= vocab):
            raise UnsupportedModelError(f"{heads_path.name}: exit_heads.{k}.vocab must list "
                                        f"distinct token ids below {vocab}")
        if weight.shape != (rows, d_model):
            raise UnsupportedModelError(f"{heads_path.name}: exit_heads.{k}.weight is "
                                        f"{list(weight.shape)}, expected [{rows}, {d_model}]")
        heads[f"{exit_head_key(k)}.w"] = np.ascontiguousarray(weight.astype(np.float32).T)
        if ids is not None:
            heads[f"{exit_head_key(k)}.vocab"] = ids.astype(np.int64)
    return heads
