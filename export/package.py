"""Write a model package atomically: graphs whose initializers all live in ONE
weights.bin (a tensor shared by encoder and decoder is stored once), tokenizer,
manifest with sha256 of every file. Written to a temporary sibling, then renamed."""
from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
from onnx import external_data_helper, numpy_helper

from edgeseq import names
from edgeseq.errors import ExportError, PackageError
from edgeseq.manifest import Manifest, describe_files, read_manifest
from .onnx_builder import WeightStore

ALIGN = 64


def _write_weights(path: Path, store: WeightStore, used: list[str]) -> dict[str, tuple[int, int]]:
    """Write each stored tensor once; an alias points at its source's bytes."""
    offsets: dict[str, tuple[int, int]] = {}
    with open(path, "wb") as f:
        for name in dict.fromkeys(store.source_of(n) for n in used):
            data = np.ascontiguousarray(store.get(name)).tobytes()
            pad = (-f.tell()) % ALIGN
            f.write(b"\0" * pad)
            offsets[name] = (f.tell(), len(data))
            f.write(data)
    for name in used:
        offsets[name] = offsets[store.source_of(name)]
    return offsets


def _attach(model: onnx.ModelProto, used: list[str], store: WeightStore,
            offsets: dict[str, tuple[int, int]]) -> None:
    for name in used:
        tensor = numpy_helper.from_array(np.asarray(store.get(name)), name)
        offset, length = offsets[name]
        external_data_helper.set_external_data(tensor, names.WEIGHTS_FILE, offset, length)
        tensor.ClearField("raw_data")
        tensor.data_location = onnx.TensorProto.EXTERNAL
        model.graph.initializer.append(tensor)


def check_export_target(out: str | Path, src: str | Path | None = None) -> None:
    """Refuse a package folder whose replacement would destroy what is not a package: the
    checkpoint `src` itself or a folder holding it, an existing folder whose manifest.json
    is not an edgeseq manifest (a web app's, say), or files a package there does not list
    (a user's notes beside it). An empty folder is used; a package is replaced."""
    target = Path(out).resolve()
    if isinstance(src, (str, Path)) and Path(src).exists():  # not a hub id, nor CT2 parts
        source = Path(src).resolve()
        if target == source or target in source.parents:
            raise ExportError(f"the package folder {target} would replace the checkpoint at "
                              f"{source}: choose a folder outside it")
    if target.exists() and not target.is_dir():
        raise ExportError(f"{target} exists and is not a folder: choose a new or empty folder")
    if not target.is_dir():
        return
    held = sorted(p.name for p in target.iterdir())
    if not held:
        return
    try:
        listed = set(read_manifest(target).files) | {names.MANIFEST_FILE}
    except PackageError:
        listed = set()
    others = [name for name in held if name not in listed]
    if others:
        names_held = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        what = (f"holds {names_held}, which its package does not list" if listed else
                f"is not an edgeseq package (it holds {names_held})")
        raise ExportError(f"{target} {what}, and export replaces the folder whole: choose a "
                          "new or empty folder, or move those files out")


@contextmanager
def replacing(out: Path) -> Iterator[None]:
    """While the body writes (and validates) a package at `out`, the package there before
    is kept aside: restored if the body fails or is interrupted (the new one removed),
    dropped once it succeeds."""
    aside = None
    if out.exists():
        aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.previous-", dir=out.parent))
        aside.rmdir()
        out.rename(aside)
    try:
        yield
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        if aside is not None:
            aside.rename(out)
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def write_package(out: Path, graphs: dict[str, tuple[onnx.ModelProto, list[str]]],
                  store: WeightStore, manifest_fields: dict, tokenizer: Path | None) -> Manifest:
    """graphs: file name -> (model without initializers, names of the weights it uses)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        used = list(dict.fromkeys(n for _, names_used in graphs.values() for n in names_used))
        offsets = _write_weights(tmp / names.WEIGHTS_FILE, store, used)
        for file_name, (model, names_used) in graphs.items():
            _attach(model, names_used, store, offsets)
            (tmp / file_name).write_bytes(model.SerializeToString())
        files = [names.WEIGHTS_FILE, *graphs]
        if tokenizer is not None:
            shutil.copyfile(tokenizer, tmp / names.TOKENIZER_FILE)
            files.append(names.TOKENIZER_FILE)
        manifest = Manifest(files=describe_files(tmp, files), has_tokenizer=tokenizer is not None,
                            **manifest_fields)
        (tmp / names.MANIFEST_FILE).write_text(json.dumps(manifest.to_json(), indent=1))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def parameter_bytes(store: WeightStore, used: list[str]) -> int:
    return sum(store.get(n).nbytes for n in dict.fromkeys(store.source_of(n) for n in used))


def record_validation(out: Path, validation: dict) -> None:
    """Store the validation report in the manifest (not hashed: it describes the files)."""
    path = Path(out) / names.MANIFEST_FILE
    data = json.loads(path.read_text())
    data["validation"] = validation
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)
