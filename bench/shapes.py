"""Model shapes the benchmarks run on, and their cached random-weight checkpoints.

No pretrained T5 weights can be fetched here, so every engine runs the same random
weights built from a fixed torch seed and saved once with ``save_pretrained``.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

CACHE_DIR = Path(__file__).resolve().parent / ".cache"

# T5 reserves ids 0-2 (pad, eos, unk) and the sentinels <extra_id_*> at 32000-32099.
_FIRST_PLAIN_ID = 3
_FIRST_SENTINEL_ID = 32000


@dataclass(frozen=True)
class Shape:
    """A T5 configuration; field names follow ``transformers.T5Config``."""

    name: str
    d_model: int
    d_ff: int
    num_heads: int
    d_kv: int
    num_layers: int  # encoder blocks
    num_decoder_layers: int
    feed_forward_proj: str  # "relu" (T5 v1.0) or "gated-gelu" (T5 v1.1 / Flan-T5)
    tie_word_embeddings: bool
    vocab_size: int = 32128

    def config_kwargs(self) -> dict:
        kwargs = asdict(self)
        del kwargs["name"]
        return kwargs


SHAPES: dict[str, Shape] = {
    s.name: s
    for s in (
        Shape("t5-small", 512, 2048, 8, 64, 6, 6, "relu", True),
        Shape("flan-t5-small", 512, 1024, 6, 64, 8, 8, "gated-gelu", False),
        Shape("tiny", 64, 128, 2, 32, 2, 2, "relu", True, vocab_size=512),
    )
}


def get_shape(name: str) -> Shape:
    if name not in SHAPES:
        raise ValueError(f"unknown shape {name!r}; choose from {sorted(SHAPES)}")
    return SHAPES[name]


def checkpoint_dir(shape: Shape, cache_dir: Path = CACHE_DIR) -> Path:
    return cache_dir / shape.name / "hf"


def ensure_checkpoint(shape: Shape, cache_dir: Path = CACHE_DIR, seed: int = 0) -> Path:
    """Build (once) and return a Hugging Face checkpoint of ``shape`` with random weights."""
    out = checkpoint_dir(shape, cache_dir)
    if (out / "config.json").exists():
        return out
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    config = T5Config(
        **shape.config_kwargs(),
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    model = T5ForConditionalGeneration(config).eval()
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    if not shape.tie_word_embeddings:
        _untie_head(tmp, shape)
    tmp.rename(out)
    return out


def _untie_head(ckpt: Path, shape: Shape) -> None:
    """Give the checkpoint its own random ``lm_head.weight`` (Flan-T5 style).

    transformers 5 forces ``tie_word_embeddings=True`` on every T5 config (keeping only
    the output scaling switch), so ``save_pretrained`` drops the head. A checkpoint that
    holds both tensors with different values, and says ``tie_word_embeddings: false``,
    loads untied and unscaled in transformers 4 and 5 alike, as real Flan-T5 ones do.
    """
    import json

    import torch
    from safetensors.torch import load_file, save_file

    weights_path = ckpt / "model.safetensors"
    weights = load_file(weights_path)
    weights["lm_head.weight"] = torch.randn(shape.vocab_size, shape.d_model)
    save_file(weights, weights_path, metadata={"format": "pt"})
    config_path = ckpt / "config.json"
    config = json.loads(config_path.read_text())
    config["tie_word_embeddings"] = False
    config_path.write_text(json.dumps(config, indent=2) + "\n")


def input_ids(shape: Shape, length: int = 64, seed: int = 1234) -> list[int]:
    """Fixed source token ids, avoiding pad/eos/unk and the sentinel ids."""
    high = min(shape.vocab_size, _FIRST_SENTINEL_ID)
    rng = random.Random(seed)
    return [rng.randrange(_FIRST_PLAIN_ID, high) for _ in range(length)]
