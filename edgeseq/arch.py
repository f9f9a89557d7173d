"""The architecture description shared by export (which builds graphs from it) and the
runtime (which sizes caches from it). Stored in the manifest as plain JSON."""
from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any


class Family(str, enum.Enum):
    T5 = "t5"
    BART = "bart"
    MBART = "mbart"
    MARIAN = "marian"
    WHISPER = "whisper"


class Norm(str, enum.Enum):
    RMS = "rms"      # T5: no mean subtraction, no bias
    LAYER = "layer"


class Activation(str, enum.Enum):
    RELU = "relu"
    GELU = "gelu"            # exact (erf)
    GELU_TANH = "gelu_tanh"  # T5 v1.1 "gelu_new"
    SILU = "silu"            # Marian "swish"


class Positions(str, enum.Enum):
    RELATIVE = "relative"      # T5 bucketed relative bias
    LEARNED = "learned"        # BART, Whisper decoder
    SINUSOIDAL = "sinusoidal"  # Marian, Whisper encoder


@dataclass(frozen=True)
class ArchSpec:
    family: Family
    d_model: int
    num_heads: int
    head_dim: int              # T5 v1.1 has head_dim != d_model / num_heads
    d_ff: int
    encoder_layers: int
    decoder_layers: int
    vocab_size: int
    norm: Norm
    norm_eps: float
    pre_norm: bool             # False: BART / Marian post-norm residual blocks
    activation: Activation
    gated_ffn: bool            # T5 v1.1: act(x W0) * (x W1)
    positions: Positions
    position_offset: int       # BART's learned positions start at index 2
    max_source_positions: int
    max_target_positions: int
    attention_scale: float     # T5 folds 1/sqrt(d) into its weights: 1.0
    embed_scale: float         # Marian: sqrt(d_model)
    embedding_norm: bool       # BART: layer norm right after the embeddings
    final_norm: bool           # T5, mBART, Whisper: norm after the last layer
    tied_head: bool
    head_scale: float          # T5 v1.0 tied head: d_model ** -0.5
    final_logits_bias: bool
    linear_bias: bool          # BART family: every projection has a bias
    key_bias: bool             # Whisper: k_proj has no bias while q/v/out do
    rel_buckets: int = 0
    rel_max_distance: int = 0
    num_mel_bins: int = 0      # Whisper only

    @property
    def inner_dim(self) -> int:
        return self.num_heads * self.head_dim

    def to_json(self) -> dict[str, Any]:
        return {k: (v.value if isinstance(v, enum.Enum) else v)
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ArchSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown architecture fields {sorted(unknown)}")
        enums = {"family": Family, "norm": Norm, "activation": Activation,
                 "positions": Positions}
        values = {k: (enums[k](v) if k in enums else v) for k, v in data.items()}
        return cls(**values)
