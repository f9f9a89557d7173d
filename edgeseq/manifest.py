"""The manifest: the contract between export and runtime. Export writes it; the runtime
reads only it (plus the files it lists, verified by sha256 before use)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import names
from .arch import ArchSpec, Family, check_bool, check_int, check_real
from .errors import PackageError
from .graph_check import check_graphs
from .runtime.options import DRAFTERS, MAX_COPY_BIAS

SCHEMA_VERSION = 1
SUPPORTED_SCHEMAS = (1, 1)
# the values of export's Quant (export/weight_formats.py, which needs `onnx`: not imported)
QUANTS = ("fp32", "fp16", "int8", "int4")
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
        """A manifest's JSON, every field checked: PackageError naming the first bad one."""
        version = data.get("schema_version")
        if isinstance(version, bool) or not isinstance(version, int) or \
                not SUPPORTED_SCHEMAS[0] <= version <= SUPPORTED_SCHEMAS[1]:
            raise PackageError(f"manifest schema version {version!r} is not supported; this "
                               f"edgeseq reads versions {SUPPORTED_SCHEMAS[0]}..{SUPPORTED_SCHEMAS[1]}")
        arch = ArchSpec.from_json(_required(data, "arch"))
        if data.get("family", arch.family.value) != arch.family.value:
            raise PackageError(f"manifest family {data['family']!r} differs from arch.family "
                               f"{arch.family.value!r}")
        quant = _required(data, "quant")
        if quant not in QUANTS:
            raise PackageError(f"manifest quant must be one of {list(QUANTS)}, got {quant!r:.40}")
        files = _object(data, "files", required=True)
        source = data.get("source", "")
        if not isinstance(source, str):
            raise PackageError(f"manifest source must be a string, got {source!r:.40}")
        manifest = cls(arch=arch, quant=quant,
                       special=_special_tokens(_object(data, "special_tokens", required=True),
                                               arch.vocab_size),
                       files=files,
                       has_tokenizer=check_bool(_required(data, "has_tokenizer"), "has_tokenizer"),
                       generation=_generation(_object(data, "generation"), arch.vocab_size),
                       graph_weight_bytes=_graph_weight_bytes(_object(data, "graph_weight_bytes"),
                                                              files),
                       exits=_exits(_object(data, "exits"), arch),
                       validation=_object(data, "validation"), source=source,
                       row_invariant_decoder=check_bool(data.get("row_invariant_decoder", False),
                                                        "row_invariant_decoder"),
                       schema_version=version)
        if data.get("tensors") != manifest.tensor_names():
            raise PackageError("manifest tensor names do not match its architecture")
        return manifest


# -- the sections of the manifest: each field's type and range ---------------------------
def _required(data: dict[str, Any], key: str) -> Any:
    if key not in data:
        raise PackageError(f"manifest is malformed: it has no {key!r}")
    return data[key]


def _object(data: dict[str, Any], key: str, required: bool = False,
            where: str = "") -> dict[str, Any]:
    """Section `key` of `data` (the manifest, or the section `where`): a JSON object;
    absent, {} unless required."""
    value = _required(data, key) if required else data.get(key, {})
    if not isinstance(value, dict):
        raise PackageError(f"manifest {where}{key} must be a JSON object, got {value!r:.40}")
    return dict(value)


def _token(value: Any, where: str, vocab_size: int, optional: bool = False) -> int | None:
    """A token id: inside the model's vocabulary (its logits), or None where optional."""
    if value is None and optional:
        return None
    return check_int(value, where, 0, vocab_size - 1)


def _special_tokens(data: dict[str, Any], vocab_size: int) -> SpecialTokens:
    known = {f.name: f.default is None for f in dataclasses.fields(SpecialTokens)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise PackageError(f"manifest special_tokens has unknown fields {unknown}")
    return SpecialTokens(**{name: _token(data.get(name), f"special_tokens.{name}", vocab_size,
                                         optional) for name, optional in known.items()})


def _generation(gen: dict[str, Any], vocab_size: int) -> dict[str, Any]:
    """The generation defaults the engine reads (runtime/engine.py); each may be absent or
    null (off). `whisper` is checked where it is read (runtime/transcribe.py)."""
    def given(key: str) -> bool:
        return gen.get(key) is not None

    if given("suppress_tokens"):
        tokens = gen["suppress_tokens"]
        if not isinstance(tokens, list):
            raise PackageError(f"manifest generation.suppress_tokens must be a list of token "
                               f"ids, got {tokens!r:.40}")
        for token in tokens:
            _token(token, "generation.suppress_tokens[]", vocab_size)
    for key in ("forced_bos", "forced_eos"):
        _token(gen.get(key), f"generation.{key}", vocab_size, optional=True)
    if given("no_repeat_ngram_size"):
        check_int(gen["no_repeat_ngram_size"], "generation.no_repeat_ngram_size")
    if given("rerank_source"):
        check_bool(gen["rerank_source"], "generation.rerank_source")
    if given("copy_bias"):
        check_real(gen["copy_bias"], "generation.copy_bias", 0, MAX_COPY_BIAS)
    if given("draft") and gen["draft"] not in DRAFTERS:
        raise PackageError(f"manifest generation.draft must be one of {list(DRAFTERS)} or null, "
                           f"got {gen['draft']!r:.40}")
    return gen


def _graph_weight_bytes(sizes: dict[str, Any], files: dict[str, Any]) -> dict[str, int]:
    for name, size in sizes.items():
        if name not in files or not name.endswith(".onnx"):
            raise PackageError(f"manifest graph_weight_bytes names {name!r:.40}, which is not a "
                               "graph the manifest lists")
        check_int(size, f"graph_weight_bytes[{name!r}]")
    return sizes


def _exits(exits: dict[str, Any], arch: ArchSpec) -> dict[str, Any]:
    """Exit layers are 1-based decoder layers (at most arch.decoder_layers: checked by
    verify_files); a draft head's rows are part of the vocabulary."""
    layers = exits.get("layers", [])
    if not isinstance(layers, list):
        raise PackageError(f"manifest exits.layers must be a list of layers, got {layers!r:.40}")
    for layer in layers:
        check_int(layer, "exits.layers[]", 1)
    for key in ("exit_trained", "shared_head"):
        if key in exits:
            check_bool(exits[key], f"exits.{key}")
    draft_vocab = _object(exits, "draft_vocab", where="exits.")
    for layer, rows in draft_vocab.items():
        if not layer.isdigit() or int(layer) not in layers:
            raise PackageError(f"manifest exits.draft_vocab names {layer!r:.40}, which is not "
                               "one of exits.layers")
        check_int(rows, f"exits.draft_vocab[{layer!r}]", 1, arch.vocab_size)
    return exits


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
    try:
        return Manifest.from_json(data)
    except PackageError as err:  # the message names the field; this names the package
        raise PackageError(f"{directory}: {err}") from err


def verify_files(directory: Path, manifest: Manifest) -> None:
    """Check every listed file exists and matches its sha256, then check every graph's
    operators, external data and inputs/outputs (graph_check), before any graph reaches
    onnxruntime: a package that fails here never gets a session. Errors name the package
    (a caller loading a target and a draft model sees which one failed)."""
    try:
        _verify_files(directory, manifest)
    except PackageError as err:
        if str(directory) in str(err):
            raise
        raise PackageError(f"{directory}: {err}") from err


def _verify_files(directory: Path, manifest: Manifest) -> None:
    required = {names.ENCODER_FILE, names.DECODER_FILE, names.WEIGHTS_FILE}
    if manifest.has_tokenizer:  # the engine loads it: it must be listed, so it is hashed
        required.add(names.TOKENIZER_FILE)
    missing = required - set(manifest.files)
    if missing:
        raise PackageError(f"manifest does not list required files {sorted(missing)}")
    for name, info in manifest.files.items():
        path = safe_member(directory, name)
        if not isinstance(info, dict) or not isinstance(info.get("bytes"), int) \
                or isinstance(info.get("bytes"), bool) or not isinstance(info.get("sha256"), str):
            raise PackageError(f"manifest entry for {name!r} must give its sha256 and bytes")
        if not path.is_file():
            raise PackageError(f"package file {name} is missing from {directory}")
        if path.stat().st_size != info.get("bytes"):
            raise PackageError(f"package file {name} has {path.stat().st_size} bytes, the "
                               f"manifest says {info.get('bytes')}: the file is corrupt or replaced")
        if sha256_file(path) != info.get("sha256"):
            raise PackageError(f"package file {name} does not match its sha256 in the manifest: "
                               "the file is corrupt or was modified; re-export the package")
    check_graphs(directory, manifest.files, manifest.tensor_names(), manifest.arch)
    # after the graphs, which name a wrong arch.decoder_layers as such
    layers = manifest.arch.decoder_layers
    past = [e for e in manifest.exits.get("layers", []) if e > layers]
    if past:
        raise PackageError(f"manifest exits.layers {past} are past the model's "
                           f"arch.decoder_layers {layers}")


def loaded_weight_bytes(manifest: Manifest) -> int:
    """Bytes of initializers the sessions load (a tensor shared by two graphs counts twice)."""
    if manifest.graph_weight_bytes:
        return sum(manifest.graph_weight_bytes.values())
    return int(manifest.files[names.WEIGHTS_FILE]["bytes"])
