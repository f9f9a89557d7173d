"""The manifest: the contract between export and runtime. Export writes it; the runtime
reads only it (plus the files it lists, verified by sha256 before use)."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import names
from .arch import ArchSpec, Family
from .errors import PackageError
from .graph_check import check_graphs

SCHEMA_VERSION = 1
SUPPORTED_SCHEMAS = (1, 1)
# quantizations whose linear layers compute each row alone, so a decoder padded to
# 2+ query rows is row-invariant (export/row_invariant.py); int4's 4-bit kernel is not
ROW_INVARIANT_QUANTS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class SpecialTokens:
    pad: int
    eos: int
    decoder_start: int
    unk: int | None = None
    bos: int | None = None


@dataclass(frozen=True)
class Manifest:
    arch: ArchSpec
    quant: str
    special: SpecialTokens
    files: dict[str, dict[str, Any]]   # file name -> {"sha256": ..., "bytes": ...}
    has_tokenizer: bool
    generation: dict[str, Any] = field(default_factory=dict)  # suppress / forced tokens
    graph_weight_bytes: dict[str, int] = field(default_factory=dict)  # per graph file
    exits: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    # every attention query has 2+ rows: k-token passes are bitwise one-token passes
    # (export/row_invariant.py)
    row_invariant_decoder: bool = False
    schema_version: int = SCHEMA_VERSION

    def tensor_names(self) -> dict[str, Any]:
        layers = range(self.arch.decoder_layers)
        encoder_inputs = ([names.ENC_INPUT_FEATURES] if self.arch.family == Family.WHISPER
                          else [names.ENC_INPUT_IDS, names.ENC_ATTENTION_MASK])
        return {
            "encoder": {"inputs": encoder_inputs,
                        "outputs": [n for i in layers
                                    for n in (names.cross_key(i), names.cross_value(i))]},
            "decoder": {"inputs": [names.DEC_INPUT_IDS, names.DEC_PAST_LENGTH,
                                   names.DEC_ENCODER_BIAS, names.DEC_LAYER_RUN,
                                   names.DEC_LAYER_FILL, names.DEC_HIDDEN_IN,
                                   names.DEC_USE_HIDDEN]
                        + [names.past_key(i) for i in layers]
                        + [names.past_value(i) for i in layers]
                        + [names.cross_key(i) for i in layers]
                        + [names.cross_value(i) for i in layers],
                        "outputs": [names.DEC_LOGITS, names.DEC_HIDDEN_OUT]
                        + [n for i in layers for n in (names.new_key(i), names.new_value(i))]},
        }

    def to_json(self) -> dict[str, Any]:
        return {"schema_version": self.schema_version, "family": self.arch.family.value,
                "arch": self.arch.to_json(), "quant": self.quant,
                "special_tokens": vars(self.special), "has_tokenizer": self.has_tokenizer,
                "tensors": self.tensor_names(), "generation": self.generation,
                "graph_weight_bytes": self.graph_weight_bytes,
                "exits": self.exits,
                "validation": self.validation, "source": self.source,
                "row_invariant_decoder": self.row_invariant_decoder, "files": self.files}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Manifest":
        version = data.get("schema_version")
        if not isinstance(version, int) or not SUPPORTED_SCHEMAS[0] <= version <= SUPPORTED_SCHEMAS[1]:
            raise PackageError(f"manifest schema version {version!r} is not supported; this "
                               f"edgeseq reads versions {SUPPORTED_SCHEMAS[0]}..{SUPPORTED_SCHEMAS[1]}")
        try:
            manifest = cls(arch=ArchSpec.from_json(data["arch"]), quant=data["quant"],
                           special=SpecialTokens(**data["special_tokens"]),
                           files=dict(data["files"]), has_tokenizer=bool(data["has_tokenizer"]),
                           generation=dict(data.get("generation", {})),
                           graph_weight_bytes=dict(data.get("graph_weight_bytes", {})),
                           exits=dict(data.get("exits", {})),
                           validation=dict(data.get("validation", {})),
                           source=str(data.get("source", "")),
                           row_invariant_decoder=data.get("row_invariant_decoder", False) is True,
                           schema_version=version)
        except (KeyError, TypeError, ValueError) as err:
            raise PackageError(f"manifest is malformed: {err}") from err
        if data.get("tensors") != manifest.tensor_names():
            raise PackageError("manifest tensor names do not match its architecture")
        return manifest


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe_files(directory: Path, file_names: list[str]) -> dict[str, dict[str, Any]]:
    return {n: {"sha256": sha256_file(directory / n), "bytes": (directory / n).stat().st_size}
            for n in file_names}


def safe_member(directory: Path, name: str) -> Path:
    """The path of package member `name`, refusing anything that is not a regular file
    directly inside the directory: no paths, no symbolic links (even to files inside)."""
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name \
            or "\\" in name or "\0" in name or os.path.isabs(name):
        raise PackageError(f"package file name {name!r} is not a plain name inside the package")
    path = directory / name
    if path.is_symlink():
        inside = path.resolve().is_relative_to(directory.resolve())
        raise PackageError(f"package file {name!r} is a symbolic link"
                           + ("" if inside else " that points outside the package")
                           + "; a package holds regular files only (copy the file in)")
    if not path.resolve().is_relative_to(directory.resolve()):
        raise PackageError(f"package file {name!r} points outside the package")
    return path


def read_manifest(directory: Path) -> Manifest:
    path = directory / names.MANIFEST_FILE
    if not directory.is_dir():
        raise PackageError(f"{directory} is not a model package directory")
    if path.is_symlink():
        raise PackageError(f"{path} is a symbolic link; a package holds regular files only")
    if not path.is_file():
        raise PackageError(f"{directory} has no {names.MANIFEST_FILE}; is it an edgeseq package? "
                           "Create one with `edgeseq export CHECKPOINT OUT`.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PackageError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise PackageError(f"{path} must hold a JSON object")
    return Manifest.from_json(data)


def verify_files(directory: Path, manifest: Manifest) -> None:
    """Check every listed file exists and matches its sha256, then check every graph's
    operators, external data and inputs/outputs (graph_check), before any graph reaches
    onnxruntime: a package that fails here never gets a session."""
    required = {names.ENCODER_FILE, names.DECODER_FILE, names.WEIGHTS_FILE}
    if manifest.has_tokenizer:  # the engine loads it: it must be listed, so it is hashed
        required.add(names.TOKENIZER_FILE)
    missing = required - set(manifest.files)
    if missing:
        raise PackageError(f"manifest does not list required files {sorted(missing)}")
    for name, info in manifest.files.items():
        path = safe_member(directory, name)
        if not isinstance(info, dict) or not isinstance(info.get("bytes"), int) \
                or not isinstance(info.get("sha256"), str):
            raise PackageError(f"manifest entry for {name!r} must give its sha256 and bytes")
        if not path.is_file():
            raise PackageError(f"package file {name} is missing from {directory}")
        if path.stat().st_size != info.get("bytes"):
            raise PackageError(f"package file {name} has {path.stat().st_size} bytes, the "
                               f"manifest says {info.get('bytes')}: the file is corrupt or replaced")
        if sha256_file(path) != info.get("sha256"):
            raise PackageError(f"package file {name} does not match its sha256 in the manifest: "
                               "the file is corrupt or was modified; re-export the package")
    check_graphs(directory, manifest.files, manifest.tensor_names())


def loaded_weight_bytes(manifest: Manifest) -> int:
    """Bytes of initializers the sessions load (a tensor shared by two graphs counts twice)."""
    if manifest.graph_weight_bytes:
        return sum(manifest.graph_weight_bytes.values())
    return int(manifest.files[names.WEIGHTS_FILE]["bytes"])
