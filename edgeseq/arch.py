"""The architecture description shared by export (which builds graphs from it) and the
runtime (which sizes caches from it). Stored in the manifest as plain JSON."""
from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass
from typing import Any

from .errors import PackageError


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
        """The manifest's `arch` section, every field checked: PackageError naming it."""
        if not isinstance(data, dict):
            raise PackageError(f"manifest arch must be a JSON object, got {data!r:.40}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(data) - set(fields)
        if unknown:
            raise PackageError(f"manifest arch has unknown fields {sorted(unknown)}")
        values = {}
        for name, f in fields.items():
            if name not in data:
                if f.default is dataclasses.MISSING:
                    raise PackageError(f"manifest is malformed: arch.{name} is missing")
                continue
            value, where = data[name], f"arch.{name}"
            if name in ENUMS:
                known = [e.value for e in ENUMS[name]]
                if value not in known:
                    raise PackageError(f"manifest {where} must be one of {known}, got {value!r}")
                value = ENUMS[name](value)
            elif f.type == "int":
                check_int(value, where, 1 if name in SIZES else 0)
            elif f.type == "float":
                check_real(value, where)
            elif f.type == "bool":
                check_bool(value, where)
            values[name] = value
        return cls(**values)


ENUMS: dict[str, type[enum.Enum]] = {"family": Family, "norm": Norm, "activation": Activation,
                                     "positions": Positions}
# sizes and counts that are at least 1; the other int fields are at least 0
SIZES = frozenset({"d_model", "num_heads", "head_dim", "d_ff", "encoder_layers",
                   "decoder_layers", "vocab_size", "max_source_positions",
                   "max_target_positions"})


# -- manifest field checks (bool is not an int, an int not a float) -------------------------
def check_int(value: Any, where: str, low: int = 0, high: int | None = None) -> int:
    """`value` if it is an int in low..high; else PackageError naming manifest field `where`."""
    span = f"{low}..{high}" if high is not None else f">= {low}"
    if isinstance(value, bool) or not isinstance(value, int) or value < low or \
            (high is not None and value > high):
        raise PackageError(f"manifest {where} must be an integer {span}, got {value!r:.40}")
    return value


def check_real(value: Any, where: str, low: float = -math.inf, high: float = math.inf) -> float:
    """`value` if it is a finite number in [low, high] (an int counts as one)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not _finite(value) or not low <= value <= high:
        bounds = "" if (low, high) == (-math.inf, math.inf) else f" in {low:g}..{high:g}"
        raise PackageError(f"manifest {where} must be a finite number{bounds}, got {value!r:.40}")
    return value


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def check_bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise PackageError(f"manifest {where} must be true or false, got {value!r:.40}")
    return value
