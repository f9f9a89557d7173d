"""The demo's tasks on a loaded engine, shared by the web server and the terminal:
text -> events (pieces as they decode, then the answer with its figures), and
audio samples -> transcript."""
from __future__ import annotations

import time
from contextlib import closing
from dataclasses import dataclass, replace
from typing import Any, Iterator

import numpy as np

from edgeseq.runtime.engine import Engine
from edgeseq.runtime.memory import Request

from .diffing import Change, word_diff
from .errors import DemoRequestError
from .figures import Figures, Memory, engine_figures, stream_figures, transcription_figures
from .inputs import AudioJob, Decoding, Drafter, Task, TextJob


@dataclass(frozen=True)
class Piece:
    text: str


@dataclass(frozen=True)
class Answer:
    model: str
    text: str
    streamed: bool                 # False: generated whole (beam search, a drafter, a rerank)
    figures: Figures
    changes: list[Change] | None   # task FIX: word changes against the input

    def to_json(self) -> dict:
        changes = None if self.changes is None else [c.to_json() for c in self.changes]
        return {"model": self.model, "text": self.text, "streamed": self.streamed,
                "figures": self.figures.to_json(), "changes": changes}


Event = Piece | Answer


def answer_text(engine: Engine, job: TextJob, model_id: str) -> Iterator[Event]:
    """Pieces as they decode (when the settings and the model stream), then one Answer."""
    settings = job.settings.for_task(job.task)
    job = replace(job, settings=settings)
    # an editing model's rerank needs the whole output: its stream would be one piece,
    # timed as if it were the first token
    streamed = settings.streams and engine.streams_tokens(**settings.generation_options())
    if streamed:
        text, figures = yield from _streamed(engine, job)
    else:
        result = engine.generate(job.text, **settings.generation_options())
        text = result.text
        figures = engine_figures(result.stats, settings.threads, engine.arch.decoder_layers,
                                 settings.drafter == Drafter.LAYERS or settings.skip is not None,
                                 settings.memory_budget_mb,
                                 beam=settings.decoding == Decoding.BEAM)
    changes = word_diff(job.text, text) if job.task == Task.FIX else None
    yield Answer(model_id, text, streamed, figures, changes)


def _streamed(engine: Engine, job: TextJob):
    """Stream the answer; returns (text, figures). Engine.stream does not plan memory, so
    a budget is planned here first and its length limit applied to the stream."""
    opts = job.settings.generation_options()
    budget = opts.pop("memory_budget_mb", None)
    started = time.perf_counter()
    plan = _stream_plan(engine, job.text, opts, budget) if budget is not None else None
    if plan is not None:
        opts["max_new_tokens"] = plan["request"]["max_new_tokens"]
    pieces: list[str] = []
    first = None
    with closing(engine.stream(job.text, **opts)) as stream:  # closing stops decoding
        for piece in stream:
            first = first or time.perf_counter()
            pieces.append(piece)
            yield Piece(piece)
    end = time.perf_counter()
    memory = Memory.now(budget, plan)
    return "".join(pieces), stream_figures(started, first, end, len(pieces),
                                           job.settings.threads, memory)


def _stream_plan(engine: Engine, text: str, opts: dict[str, Any], budget_mb: float) -> dict:
    source_length = len(engine.codec.encode(text))
    wanted = Request(batch=1, source_length=source_length, max_new_tokens=opts["max_new_tokens"])
    return engine.memory_plan(budget_mb, wanted).to_json()


@dataclass(frozen=True)
class Transcript:
    model: str
    text: str
    segments: list[dict]   # {start, end, text}, seconds
    language: str | None
    figures: Figures

    def to_json(self) -> dict:
        return {"model": self.model, "text": self.text, "segments": self.segments,
                "language": self.language, "figures": self.figures.to_json()}


def transcribe(engine: Engine, samples: np.ndarray, job: AudioJob, model_id: str) -> Transcript:
    """16 kHz mono float32 samples -> transcript, through Engine.transcribe."""
    if not callable(getattr(engine, "transcribe", None)):
        raise DemoRequestError("this edgeseq build has no Engine.transcribe yet; "
                               "update edgeseq to transcribe audio")
    try:
        result = engine.transcribe(samples, sample_rate=16000)
    except NotImplementedError as err:
        raise DemoRequestError(f"transcription is not available yet: {err}") from err
    segments = [{"start": float(s.start), "end": float(s.end), "text": str(s.text)}
                for s in getattr(result, "segments", None) or []]
    return Transcript(model_id, str(result.text), segments, getattr(result, "language", None),
                      transcription_figures(getattr(result, "stats", None), job.threads))
