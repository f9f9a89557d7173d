"""The models the demo offers: the embedded default model and every package directory
(a folder with manifest.json) directly inside the models folder. Requests name a model by
its id from this list; a request never supplies a path."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from edgeseq import names
from edgeseq.arch import Family
from edgeseq.errors import PackageError
from edgeseq.manifest import read_manifest
from edgeseq.runtime.engine import resolve_package

from .errors import NotFound

DEFAULT_ID = "default"
WHISPER_HINT = ("put a Whisper package in the models folder: "
                "`edgeseq export <ct2 or HF whisper dir> models/whisper-tiny-en`")


@dataclass(frozen=True)
class ModelEntry:
    id: str              # what requests name
    family: str          # manifest family: t5, bart, mbart, marian, whisper
    quant: str
    has_tokenizer: bool
    size_mb: float       # bytes of the package's files
    source: str          # what edgeseq.load takes ("default" or the directory); server-side only

    @property
    def is_whisper(self) -> bool:
        return self.family == Family.WHISPER.value

    @property
    def takes_text(self) -> bool:
        return self.has_tokenizer and not self.is_whisper

    def to_json(self) -> dict:
        kind = "speech" if self.is_whisper else "text" if self.has_tokenizer else "ids-only"
        return {"id": self.id, "family": self.family, "quant": self.quant,
                "has_tokenizer": self.has_tokenizer, "size_mb": round(self.size_mb, 1),
                "kind": kind}


def _entry(model_id: str, directory: Path, source: str) -> ModelEntry:
    m = read_manifest(directory)
    size = sum(int(f.get("bytes", 0)) for f in m.files.values()) / 1e6
    return ModelEntry(model_id, m.arch.family.value, m.quant, m.has_tokenizer, size, source)


@dataclass(frozen=True)
class Listing:
    entries: dict[str, ModelEntry]
    default_missing: bool
    problems: tuple[str, ...]   # folders that look like packages but cannot be read


def scan(models_dir: Path | None) -> Listing:
    """Read the manifests (not the graphs) of the default model and the models folder."""
    entries: dict[str, ModelEntry] = {}
    problems: list[str] = []
    try:
        entries[DEFAULT_ID] = _entry(DEFAULT_ID, resolve_package(DEFAULT_ID), DEFAULT_ID)
        default_missing = False
    except PackageError:
        default_missing = True
    if models_dir is not None and not models_dir.is_dir():
        problems.append(f"the models folder {models_dir} does not exist")
    elif models_dir is not None:
        for folder in sorted(p for p in models_dir.iterdir() if p.is_dir()):
            if not (folder / names.MANIFEST_FILE).is_file():
                continue
            if folder.name in entries:
                problems.append(f"{folder.name}: the name is taken by the embedded model")
                continue
            try:
                entries[folder.name] = _entry(folder.name, folder, str(folder))
            except PackageError as err:
                problems.append(f"{folder.name}: {err}")
    return Listing(entries, default_missing, tuple(problems))


class Catalog:
    """The current listing; `refresh` rescans (packages exported while the demo runs)."""

    def __init__(self, models_dir: Path | None):
        self.models_dir = models_dir
        self._lock = threading.Lock()
        self._listing = scan(models_dir)

    def refresh(self) -> Listing:
        listing = scan(self.models_dir)
        with self._lock:
            self._listing = listing
        return listing

    @property
    def listing(self) -> Listing:
        with self._lock:
            return self._listing

    def get(self, model_id: str) -> ModelEntry:
        entry = self.listing.entries.get(model_id)
        if entry is None:
            raise NotFound(f"no model with id {model_id!r}; choose one of the listed models")
        return entry

    def fix_model(self) -> ModelEntry | None:
        """The grammar model: the embedded default, else the first text package."""
        text = [e for e in self.listing.entries.values() if e.takes_text]
        return next((e for e in text if e.id == DEFAULT_ID), text[0] if text else None)

    def whisper_model(self) -> ModelEntry | None:
        return next((e for e in self.listing.entries.values() if e.is_whisper), None)

    def for_text(self, model_id: str | None) -> ModelEntry:
        """The entry for a text request (None: the grammar model)."""
        if model_id is None:
            entry = self.fix_model()
            if entry is None:
                raise NotFound(f"the embedded default model is missing and {self._folder()} "
                               "holds no text model package; export one with "
                               "`edgeseq export CHECKPOINT models/NAME`")
            return entry
        entry = self.get(model_id)
        if not entry.takes_text:
            raise NotFound(f"model {model_id!r} does not take text (a {entry.family} "
                           f"{'package' if entry.has_tokenizer else 'ids-only package'})")
        return entry

    def for_audio(self, model_id: str | None) -> ModelEntry:
        """The entry for a transcription (None: the first Whisper package)."""
        entry = self.whisper_model() if model_id is None else self.get(model_id)
        if entry is None:
            raise NotFound(f"no Whisper package in {self._folder()}; {WHISPER_HINT}")
        if not entry.is_whisper:
            raise NotFound(f"model {model_id!r} is a {entry.family} model, not Whisper")
        return entry

    def _folder(self) -> str:
        return str(self.models_dir) if self.models_dir is not None else "the models folder"

    def to_json(self) -> dict:
        listing = self.listing
        fix, whisper = self.fix_model(), self.whisper_model()
        return {"models": [e.to_json() for e in listing.entries.values()],
                "fix_model": fix.id if fix else None,
                "default_missing": listing.default_missing,
                "whisper_model": whisper.id if whisper else None,
                "whisper_hint": WHISPER_HINT, "problems": list(listing.problems)}
