"""Transcribe the shared audio clips once with given options and add up their stats: the
loop the Whisper benchmarks share."""
from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from pathlib import Path

AUDIO = Path(__file__).resolve().parents[2] / "shared" / "data" / "audio"


@dataclass
class ClipsRun:
    texts: list[str] = field(default_factory=list)
    seconds: float = 0.0          # wall time of the whole run
    audio_s: float = 0.0
    decoder_ms: float = 0.0
    decoder_passes: int = 0
    layers_executed: int = 0
    drafted: int = 0
    accepted: int = 0

    @classmethod
    def joined(cls, runs: list[ClipsRun]) -> ClipsRun:
        """Runs over different clips as one run over all of them, in order."""
        whole = cls()
        for run in runs:
            for f in fields(cls):  # every field adds up: texts as lists, figures as sums
                setattr(whole, f.name, getattr(whole, f.name) + getattr(run, f.name))
        return whole

    @property
    def layers_per_pass(self) -> float:
        return self.layers_executed / max(1, self.decoder_passes)

    @property
    def acceptance(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0


def clips(folder: Path = AUDIO) -> list[Path]:
    found = sorted(folder.glob("*.wav"))
    if not found:
        raise SystemExit(f"no WAV files in {folder}")
    return found


def transcribe_clips(engine, paths: list[Path], options: dict) -> ClipsRun:
    run = ClipsRun()
    start = time.perf_counter()
    for path in paths:
        result = engine.transcribe(path, **options)
        run.texts.append(result.text)
        s = result.stats
        run.audio_s += s.audio_s
        run.decoder_ms += s.decoder_ms
        run.decoder_passes += s.decoder_passes
        run.layers_executed += s.layers_executed
        run.drafted += s.drafted
        run.accepted += s.accepted
    run.seconds = time.perf_counter() - start
    return run
