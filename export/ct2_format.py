"""Read and write CTranslate2 ``model.bin`` files without importing ctranslate2.

Binary layout (all integers little-endian; "string" = u16 byte length that counts a
trailing NUL, then the UTF-8 bytes and the NUL):

    u32     binary version (1..6; ctranslate2 4.x writes 6)
    string  spec name, e.g. "WhisperSpec"          [version >= 2]
    u32     spec revision                           [version >= 2]
    u32     variable count
    per variable:
      string  name, e.g. "encoder/layer_0/ffn/linear_0/weight"
      u8      rank
      u32     dims[rank]
      u8      dtype id (see ``CT2_DTYPES``)          [version >= 4]
      u32     byte count                             [version >= 4]
      (u8 item size, u32 element count instead       [version < 4])
      bytes   raw row-major data
    u32     alias count                              [version >= 3]
    per alias: string alias, string target variable

Whisper helpers at the end map a CTranslate2 Whisper checkpoint (as shipped with
faster-whisper) onto Hugging Face ``WhisperForConditionalGeneration`` names and config.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CT2_DTYPES", "CT2FormatError", "CT2Model", "bfloat16_to_float32",
    "ct2_whisper_to_hf_state_dict", "hf_whisper_config_from_ct2", "open_ct2_whisper_dir",
    "parse_ct2_model", "read_ct2_model", "write_ct2_model",
]

# Index == dtype id written in the file. Pinned to ctranslate2's C++ DataType enum
# (float32, int8, int16, int32, float16, bfloat16); new ids are only ever appended.
CT2_DTYPES: tuple[str, ...] = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
_ITEM_SIZES: tuple[int, ...] = (4, 1, 2, 4, 2, 2)
# numpy has no bfloat16: its raw bits are held as uint16 and the name is recorded in
# ``CT2Model.bfloat16``.
_NUMPY_DTYPES: tuple[np.dtype, ...] = tuple(
    np.dtype(n).newbyteorder("<") for n in (*CT2_DTYPES[:5], "uint16")
)
# Pre-v4 files stored only the item size; ctranslate2 maps it back with this guess.
_LEGACY_ITEM_SIZE_TO_ID = {4: 0, 2: 2, 1: 1}
_MAX_VERSION = 6
_WRITABLE_VERSIONS = (4, 5, 6)  # identical byte layout; v5 only changed quantization rounding
_U32_MAX = 2**32 - 1


class CT2FormatError(ValueError):
    """A CTranslate2 model file (or a model about to be written) is malformed."""


@dataclass(frozen=True, eq=False)  # arrays have no single truth value: compare by identity
class CT2Model:
    """The contents of a CTranslate2 ``model.bin``.

    Arrays read from a file are read-only views into one shared buffer; copy one
    before editing it. Scalars (e.g. ``encoder/num_heads``) are rank-0 arrays.
    """

    version: int  # binary format version of the file (1..6)
    spec_name: str  # e.g. "WhisperSpec"; "" for version-1 files
    revision: int  # spec revision (the architecture's weight layout version)
    variables: dict[str, np.ndarray]  # name -> tensor, in file order
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> variable name
    bfloat16: frozenset[str] = frozenset()  # variables whose uint16 array is bfloat16 bits

    def get(self, name: str) -> np.ndarray:
        """Return the variable ``name``, following an alias if needed."""
        target = self.aliases.get(name, name)
        if target not in self.variables:
            raise KeyError(f"no CTranslate2 variable or alias named {name!r}")
        return self.variables[target]


def bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    """Widen bfloat16 stored as uint16 bits to float32 (exact)."""
    if bits.dtype != np.uint16:
        raise TypeError(f"expected uint16 bfloat16 bits, got {bits.dtype}")
    return (bits.astype(np.uint32) << 16).view(np.float32)


# ---------------------------------------------------------------------------- reading


class _Cursor:
    """Bounds-checked reader over an in-memory buffer."""

    def __init__(self, buffer: bytes | bytearray | memoryview, source: str) -> None:
        self.buf = memoryview(buffer).cast("B")
        self.pos = 0
        self.source = source

    @property
    def remaining(self) -> int:
        return len(self.buf) - self.pos

    def fail(self, message: str) -> CT2FormatError:
        return CT2FormatError(f"{self.source}: {message} (near byte offset {self.pos})")

    def take(self, n: int, what: str) -> memoryview:
        if n > self.remaining:
            raise self.fail(f"file is truncated: {what} needs {n} bytes, {self.remaining} remain")
        chunk = self.buf[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        return struct.unpack("<H", self.take(2, what))[0]

    def u32(self, what: str) -> int:
        return struct.unpack("<I", self.take(4, what))[0]

    def string(self, what: str) -> str:
        raw = bytes(self.take(self.u16(f"length of {what}"), what))
        if raw.endswith(b"\0"):
            raw = raw[:-1]
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail(f"{what} is not valid UTF-8: {raw[:40]!r}") from exc


def _read_variable(cur: _Cursor, version: int, index: int) -> tuple[str, np.ndarray, bool]:
    name = cur.string(f"name of variable #{index}")
    rank = cur.u8(f"rank of {name!r}")
    dims = tuple(cur.u32(f"dimension {i} of {name!r}") for i in range(rank))
    if version >= 4:
        type_id = cur.u8(f"dtype of {name!r}")
        if type_id >= len(CT2_DTYPES):
            known = ", ".join(f"{i}={n}" for i, n in enumerate(CT2_DTYPES))
            raise cur.fail(f"variable {name!r} has unknown dtype id {type_id} (known: {known})")
        num_bytes = cur.u32(f"byte count of {name!r}")
    else:
        item_size = cur.u8(f"item size of {name!r}")
        if item_size not in _LEGACY_ITEM_SIZE_TO_ID:
            raise cur.fail(f"variable {name!r} has unsupported item size {item_size}")
        type_id = _LEGACY_ITEM_SIZE_TO_ID[item_size]
        num_bytes = cur.u32(f"element count of {name!r}") * item_size
    expected = math.prod(dims) * _ITEM_SIZES[type_id]
    if expected != num_bytes:
        raise cur.fail(f"variable {name!r} of shape {dims} and dtype {CT2_DTYPES[type_id]} "
                       f"needs {expected} bytes but the file declares {num_bytes}")
    data = cur.take(num_bytes, f"data of {name!r}")
    dtype = _NUMPY_DTYPES[type_id]
    array = np.frombuffer(data, dtype=dtype).reshape(dims) if num_bytes else np.zeros(dims, dtype)
    return name, array, CT2_DTYPES[type_id] == "bfloat16"


def parse_ct2_model(buffer: bytes | bytearray | memoryview, source: str = "<bytes>") -> CT2Model:
    """Parse a whole ``model.bin`` held in memory; arrays are views into ``buffer``."""
    cur = _Cursor(buffer, source)
    if cur.remaining == 0:
        raise cur.fail("file is empty")
    version = cur.u32("binary version")
    if not 1 <= version <= _MAX_VERSION:
        raise cur.fail(f"unsupported binary version {version} (this reader supports "
                       f"1..{_MAX_VERSION}); is this really a CTranslate2 model.bin?")
    spec_name, revision = "", 1
    if version >= 2:
        spec_name = cur.string("spec name")
        revision = cur.u32("spec revision")
    count = cur.u32("variable count")
    if count * 8 > cur.remaining:  # 8 bytes: the smallest possible variable entry
        raise cur.fail(f"header claims {count} variables but only {cur.remaining} bytes remain")
    variables: dict[str, np.ndarray] = {}
    bf16: set[str] = set()
    for index in range(count):
        name, array, is_bf16 = _read_variable(cur, version, index)
        if name in variables:
            raise cur.fail(f"variable {name!r} appears twice")
        variables[name] = array
        if is_bf16:
            bf16.add(name)
    aliases: dict[str, str] = {}
    if version >= 3:
        n_aliases = cur.u32("alias count")
        if n_aliases * 4 > cur.remaining:
            raise cur.fail(f"claims {n_aliases} aliases but only {cur.remaining} bytes remain")
        for index in range(n_aliases):
            alias = cur.string(f"alias #{index}")
            target = cur.string(f"target of alias {alias!r}")
            if target not in variables:
                raise cur.fail(f"alias {alias!r} points to missing variable {target!r}")
            aliases[alias] = target
    if cur.remaining:
        raise cur.fail(f"{cur.remaining} unexpected bytes after the last section")
    return CT2Model(version, spec_name, revision, variables, aliases, frozenset(bf16))


def read_ct2_model(path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> CT2Model:
    """Read a ``model.bin``; a sequence of paths is read as parts concatenated in order."""
    paths = [Path(path)] if isinstance(path, (str, os.PathLike)) else [Path(p) for p in path]
    if not paths:
        raise CT2FormatError("no model file given")
    for p in paths:
        if not p.is_file():
            raise CT2FormatError(f"{p}: no such CTranslate2 model file")
    buffer = paths[0].read_bytes() if len(paths) == 1 else b"".join(p.read_bytes() for p in paths)
    source = str(paths[0]) if len(paths) == 1 else " + ".join(p.name for p in paths)
    return parse_ct2_model(buffer, source)


# ---------------------------------------------------------------------------- writing


def _type_id(name: str, array: np.ndarray, bf16: frozenset[str]) -> int:
    if name in bf16:
        if array.dtype != np.uint16:
            raise CT2FormatError(f"bfloat16 {name!r} must hold uint16 bits, not {array.dtype}")
        return CT2_DTYPES.index("bfloat16")
    dtype_name = array.dtype.name  # "bfloat16" for ml_dtypes arrays too
    if dtype_name not in CT2_DTYPES:
        raise CT2FormatError(f"variable {name!r} has dtype {dtype_name}, which CTranslate2 "
                             f"cannot store (supported: {', '.join(CT2_DTYPES)})")
    return CT2_DTYPES.index(dtype_name)


def _pack_string(text: str, what: str) -> bytes:
    raw = text.encode("utf-8") + b"\0"
    if len(raw) > 0xFFFF:
        raise CT2FormatError(f"{what} is too long ({len(raw)} bytes, max 65535)")
    return struct.pack("<H", len(raw)) + raw


def _pack_variable_header(name: str, array: np.ndarray, type_id: int) -> bytes:
    if not name:
        raise CT2FormatError("variable names must be non-empty")
    if array.ndim > 255:
        raise CT2FormatError(f"variable {name!r} has rank {array.ndim} (max 255)")
    if any(d > _U32_MAX for d in array.shape) or array.nbytes > _U32_MAX:
        raise CT2FormatError(f"variable {name!r} is too large for the format (4 GiB max)")
    return (_pack_string(name, f"variable name {name[:40]!r}")
            + struct.pack(f"<B{array.ndim}IBI", array.ndim, *array.shape, type_id, array.nbytes))


def write_ct2_model(path: str | os.PathLike[str], model: CT2Model) -> None:
    """Write ``model`` as a CTranslate2 ``model.bin`` (binary version 4, 5 or 6).

    The file is written to a temporary name first and renamed into place.
    """
    if model.version not in _WRITABLE_VERSIONS:
        raise CT2FormatError(f"can only write binary versions {_WRITABLE_VERSIONS}, "
                             f"model says {model.version}")
    for alias, target in model.aliases.items():
        if target not in model.variables:
            raise CT2FormatError(f"alias {alias!r} points to missing variable {target!r}")
    unknown_bf16 = model.bfloat16 - model.variables.keys()
    if unknown_bf16:
        raise CT2FormatError(f"bfloat16 names not among the variables: {sorted(unknown_bf16)}")
    out = Path(path)
    tmp = out.with_name(out.name + ".partial")
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<I", model.version))
            f.write(_pack_string(model.spec_name, "spec name"))
            f.write(struct.pack("<II", model.revision, len(model.variables)))
            for name, value in model.variables.items():
                array = np.asarray(value)
                type_id = _type_id(name, array, model.bfloat16)
                f.write(_pack_variable_header(name, array, type_id))
                if array.dtype.byteorder == ">":
                    array = array.astype(array.dtype.newbyteorder("<"))
                f.write(np.ascontiguousarray(array).tobytes())
            f.write(struct.pack("<I", len(model.aliases)))
            for alias, target in model.aliases.items():
                f.write(_pack_string(alias, "alias") + _pack_string(target, "alias target"))
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()


# ---------------------------------------------------------------------------- Whisper

_PathLike = str | os.PathLike[str]
_PART_RE = re.compile(r"^model\.bin\.part(\d+)$")


def _model_files(directory: Path) -> list[Path]:
    if (directory / "model.bin").is_file():
        return [directory / "model.bin"]
    parts = sorted((int(m[1]), p) for p in directory.iterdir() if (m := _PART_RE.match(p.name)))
    if not parts:
        raise CT2FormatError(f"{directory}: no model.bin or model.bin.part<N> files")
    numbers = [n for n, _ in parts]
    if len(numbers) < 2 or numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        raise CT2FormatError(f"{directory}: found only model.bin part(s) {numbers}; if the "
                             "other parts live in other folders, pass all part files as a list")
    return [p for _, p in parts]


def open_ct2_whisper_dir(
    source: _PathLike | Sequence[_PathLike],
) -> tuple[CT2Model, dict[str, Any]]:
    """Read a CTranslate2 Whisper checkpoint and its ``config.json``.

    ``source`` is a folder holding ``model.bin`` (or ``model.bin.part1..N``), or a list of
    part files in order, in which case ``config.json`` is taken from the first part's
    folder that has one.
    """
    if isinstance(source, (str, os.PathLike)):
        directory = Path(source)
        if not directory.is_dir():
            raise CT2FormatError(f"{directory}: not a directory")
        files = _model_files(directory)
    else:
        files = [Path(p) for p in source]
    config_dirs = list(dict.fromkeys(p.parent for p in files))
    config_path = next((d / "config.json" for d in config_dirs if (d / "config.json").is_file()),
                       None)
    if config_path is None:
        raise CT2FormatError(f"no config.json in {', '.join(map(str, config_dirs))}")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CT2FormatError(f"{config_path}: not valid JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise CT2FormatError(f"{config_path}: expected a JSON object")
    model = read_ct2_model(files)
    if model.spec_name != "WhisperSpec":
        raise CT2FormatError(f"{files[0]}: spec is {model.spec_name!r}, expected 'WhisperSpec'")
    return model, config


def _need(model: CT2Model, name: str) -> np.ndarray:
    try:
        return model.get(name)
    except KeyError:
        raise CT2FormatError(f"not a CTranslate2 Whisper model: no variable {name!r}") from None


def _float_tensor(model: CT2Model, name: str, float32: bool) -> np.ndarray:
    """A weight as float32 (or its stored float16), dequantizing int8/int16 if needed."""
    array = _need(model, name)
    name = model.aliases.get(name, name)  # a tied weight's scale sits beside its target
    if name in model.bfloat16:
        return bfloat16_to_float32(array)
    if array.dtype.kind == "i":
        scale_name = name + "_scale"
        if scale_name not in model.variables:
            raise CT2FormatError(f"quantized weight {name!r} has no {scale_name!r}")
        if name.endswith("/weight") and name[: -len("weight")] + "weight_zero" in model.variables:
            raise CT2FormatError(f"{name!r} is AWQ-quantized, which is not supported")
        scale = _float_tensor(model, scale_name, True).astype(np.float32)
        # CTranslate2 stores round(w * scale): one scale per output channel (int8) or
        # one scalar (int16).
        if scale.ndim == 1:
            scale = scale.reshape((-1,) + (1,) * (array.ndim - 1))
        return array.astype(np.float32) / scale
    if array.dtype.kind != "f":
        raise CT2FormatError(f"variable {name!r} has dtype {array.dtype}, expected a float weight")
    return np.array(array, dtype=np.float32 if float32 else array.dtype)


def _count_layers(model: CT2Model, side: str) -> int:
    pattern = re.compile(rf"^{side}/layer_(\d+)/")
    found = {int(m.group(1)) for n in model.variables if (m := pattern.match(n))}
    if found != set(range(len(found))) or not found:
        raise CT2FormatError(f"{side} layers are missing or not numbered 0..N-1: {sorted(found)}")
    return len(found)


def ct2_whisper_to_hf_state_dict(model: CT2Model, *, float32: bool = True) -> dict[str, np.ndarray]:
    """Map CT2 Whisper variables to ``WhisperForConditionalGeneration`` state-dict names.

    Fused projections are split: self-attention ``linear_0`` [3d, d] into q/k/v,
    cross-attention ``linear_1`` [2d, d] into k/v. HF Whisper's k_proj has no bias, so
    the (zero) key bias CTranslate2 stores is dropped; a key bias only adds a per-query
    constant to the attention logits, which softmax ignores, so dropping it is exact
    even when nonzero. int8/int16 weights are dequantized to float32; float16 weights
    become float32 unless ``float32=False``. Arrays are fresh, writable copies.
    """
    if model.spec_name != "WhisperSpec":
        raise CT2FormatError(f"spec is {model.spec_name!r}, expected 'WhisperSpec'")
    d_model = _need(model, "encoder/conv1/weight").shape[0]
    out: dict[str, np.ndarray] = {}

    def linear(dst: str, src: str, splits: tuple[str, ...] = ("",)) -> None:
        weight = _float_tensor(model, f"{src}/weight", float32)
        bias = _float_tensor(model, f"{src}/bias", float32)
        rows = weight.shape[0] // len(splits)
        if len(splits) > 1 and weight.shape[:1] != (d_model * len(splits),):
            raise CT2FormatError(f"fused {src}/weight has shape {weight.shape}, expected "
                                 f"({len(splits)} * {d_model}, {d_model})")
        for i, part in enumerate(splits):
            key = f"{dst}.{part}" if part else dst
            out[f"{key}.weight"] = np.ascontiguousarray(weight[i * rows : (i + 1) * rows])
            if part != "k_proj":
                out[f"{key}.bias"] = np.ascontiguousarray(bias[i * rows : (i + 1) * rows])

    def norm(dst: str, src: str) -> None:
        out[f"{dst}.weight"] = _float_tensor(model, f"{src}/gamma", float32)
        out[f"{dst}.bias"] = _float_tensor(model, f"{src}/beta", float32)

    for conv in ("conv1", "conv2"):
        linear(f"model.encoder.{conv}", f"encoder/{conv}")
    for side in ("encoder", "decoder"):
        pos = _float_tensor(model, f"{side}/position_encodings/encodings", float32)
        out[f"model.{side}.embed_positions.weight"] = pos
        norm(f"model.{side}.layer_norm", f"{side}/layer_norm")
        for i in range(_count_layers(model, side)):
            src, dst = f"{side}/layer_{i}", f"model.{side}.layers.{i}"
            qkv = ("q_proj", "k_proj", "v_proj")
            linear(f"{dst}.self_attn", f"{src}/self_attention/linear_0", qkv)
            linear(f"{dst}.self_attn.out_proj", f"{src}/self_attention/linear_1")
            norm(f"{dst}.self_attn_layer_norm", f"{src}/self_attention/layer_norm")
            if side == "decoder":
                linear(f"{dst}.encoder_attn.q_proj", f"{src}/attention/linear_0")
                linear(f"{dst}.encoder_attn", f"{src}/attention/linear_1", ("k_proj", "v_proj"))
                linear(f"{dst}.encoder_attn.out_proj", f"{src}/attention/linear_2")
                norm(f"{dst}.encoder_attn_layer_norm", f"{src}/attention/layer_norm")
            linear(f"{dst}.fc1", f"{src}/ffn/linear_0")
            linear(f"{dst}.fc2", f"{src}/ffn/linear_1")
            norm(f"{dst}.final_layer_norm", f"{src}/ffn/layer_norm")
    embed = _float_tensor(model, "decoder/embeddings/weight", float32)
    out["model.decoder.embed_tokens.weight"] = embed
    tied = model.aliases.get("decoder/projection/weight") == "decoder/embeddings/weight"
    proj = embed if tied else _float_tensor(model, "decoder/projection/weight", float32)
    out["proj_out.weight"] = proj  # tied weights stay one shared array
    return out


def _scalar(model: CT2Model, name: str) -> int:
    return int(_need(model, name).reshape(-1)[0])


def hf_whisper_config_from_ct2(
    model: CT2Model, config_json: Mapping[str, Any], vocabulary: Sequence[str] | None = None
) -> dict[str, Any]:
    """``WhisperConfig`` keyword arguments for a CT2 Whisper model and its config.json.

    Special token ids come from ``vocabulary`` (the lines of ``vocabulary.txt``) when
    given; otherwise from OpenAI's rule: English-only models have 51864 tokens with
    <|endoftext|> = 50256, multilingual ones put every special token one id later.
    """
    conv1 = _need(model, "encoder/conv1/weight")
    vocab_size = _need(model, "decoder/embeddings/weight").shape[0]
    if _scalar(model, "decoder/activation") != 3:  # ctranslate2's Activation.GELU
        raise CT2FormatError("decoder activation is not GELU; not a Whisper model")
    if vocabulary is not None:
        ids = {token: i for i, token in enumerate(vocabulary)}
        missing = [t for t in ("<|endoftext|>", "<|startoftranscript|>") if t not in ids]
        if missing:
            raise CT2FormatError(f"vocabulary lacks {missing}")
        eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    else:
        eot = 50256 + (vocab_size >= 51865)
        sot = eot + 1
    begin = list(config_json.get("suppress_ids_begin", [220, eot]))
    tied = model.aliases.get("decoder/projection/weight") == "decoder/embeddings/weight"
    return {
        "vocab_size": vocab_size,
        "num_mel_bins": conv1.shape[1],
        "d_model": conv1.shape[0],
        "encoder_layers": _count_layers(model, "encoder"),
        "decoder_layers": _count_layers(model, "decoder"),
        "encoder_attention_heads": _scalar(model, "encoder/num_heads"),
        "decoder_attention_heads": _scalar(model, "decoder/num_heads"),
        "encoder_ffn_dim": _need(model, "encoder/layer_0/ffn/linear_0/weight").shape[0],
        "decoder_ffn_dim": _need(model, "decoder/layer_0/ffn/linear_0/weight").shape[0],
        "max_source_positions": _need(model, "encoder/position_encodings/encodings").shape[0],
        "max_target_positions": _need(model, "decoder/position_encodings/encodings").shape[0],
        "activation_function": "gelu",
        "scale_embedding": bool(_scalar(model, "decoder/scale_embeddings")),
        "suppress_tokens": list(config_json.get("suppress_ids", [])),
        "begin_suppress_tokens": begin,
        "bos_token_id": eot,
        "eos_token_id": eot,
        "pad_token_id": eot,
        "decoder_start_token_id": sot,
        "tie_word_embeddings": tied,
    }
