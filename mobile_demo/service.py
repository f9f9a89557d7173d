"""The demo's state shared by every request and the terminal: the model catalog, the
engine cache and the request limits; it turns jobs into answers."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from edgeseq.runtime.audio import load_audio

from .catalog import Catalog, ModelEntry
from .engines import EngineCache
from .errors import BodyTooLarge
from .inputs import MAX_THREADS, MB, AudioJob, Limits, TextJob
from edgeseq.profiles import PROFILES
from .tasks import Event, Transcript, answer_text, transcribe


@dataclass
class Demo:
    catalog: Catalog
    engines: EngineCache = field(default_factory=EngineCache)
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def open(cls, models_dir: Path | None, limits: Limits | None = None) -> "Demo":
        return cls(Catalog(models_dir), EngineCache(), limits or Limits())

    def answer(self, job: TextJob) -> Iterator[Event]:
        """Raises NotFound for an unknown model before any decoding starts."""
        entry = self.catalog.for_text(job.model)
        return self._answer(entry, job)

    def _answer(self, entry: ModelEntry, job: TextJob) -> Iterator[Event]:
        # the engine loads at the first event and stays leased until the answer ends or
        # its reader closes the stream
        with self.engines.lease(entry, job.settings.threads) as engine:
            yield from answer_text(engine, job, entry.id)

    def transcribe(self, wav: bytes | os.PathLike[str], job: AudioJob) -> Transcript:
        """WAV bytes (or, in the terminal, a path the local user typed) -> transcript. The
        audio is decoded first, so a bad file is reported even without a Whisper model."""
        if isinstance(wav, bytes) and len(wav) > self.limits.max_audio_bytes:
            raise BodyTooLarge(self._audio_too_large(len(wav)))
        if not isinstance(wav, bytes) and os.path.getsize(wav) > self.limits.max_audio_bytes:
            raise BodyTooLarge(self._audio_too_large(os.path.getsize(wav)))
        samples = load_audio(wav)
        entry = self.catalog.for_audio(job.model)
        with self.engines.lease(entry, job.threads) as engine:
            return transcribe(engine, samples, job, entry.id)

    def _audio_too_large(self, size: int) -> str:
        return (f"the audio is {size / MB:.1f} MB; the demo takes at most "
                f"{self.limits.max_audio_bytes / MB:.0f} MB (trim it or send 16 kHz mono)")

    def config_json(self) -> dict:
        """What the page needs besides the model list: profiles and limits."""
        return {"profiles": {n: p.to_json() for n, p in PROFILES.items()},
                "limits": self.limits.to_json(), "cpu_count": os.cpu_count() or 1,
                "max_threads": MAX_THREADS}
