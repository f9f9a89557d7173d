"""What a request asks for, parsed and checked in one place. The page's JSON body and the
terminal's settings both become a TextJob; every error names the field and the range."""
from __future__ import annotations

import enum
from dataclasses import dataclass, fields, replace
from typing import Any, Mapping

from edgeseq.runtime.options import AUTO_DRAFT, resolve_auto_draft
from .errors import DemoRequestError

MB = 1 << 20
# Threads may exceed this machine's cores (a profile mimics a 4-core Pi on a 2-core
# laptop); the cap bounds the thread pools one request can make the demo create.
MAX_THREADS = 32


@dataclass(frozen=True)
class Limits:
    max_text_chars: int = 2000
    max_audio_bytes: int = 10 * MB
    max_json_bytes: int = 64 * 1024   # 2,000 characters, \u-escaped, fit with room to spare

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Task(str, enum.Enum):
    FIX = "fix"            # the grammar model, changes highlighted
    GENERATE = "generate"  # any text package, free generation


class Decoding(str, enum.Enum):
    GREEDY = "greedy"
    SAMPLE = "sample"
    BEAM = "beam"


class Drafter(str, enum.Enum):
    AUTO = "auto"      # the task's: input for Fix my text, none for free generation
    INPUT = "input"    # copy spans of the input (grammar correction copies most of it)
    NGRAM = "ngram"    # continuations of n-grams seen in earlier answers
    LAYERS = "layers"  # self-speculation: the first decoder layers draft


class SkipMode(str, enum.Enum):
    """Lossy layer skipping (the lossless one is the "layers" drafter)."""
    UNIFIED_1_5 = "unified-1.5"   # skip a balanced third of the decoder layers
    UNIFIED_2 = "unified-2"       # skip half of them
    CONFIDENT = "confident"       # per token: exit once the top probability >= 0.9

    def options(self) -> dict[str, Any]:
        return {SkipMode.UNIFIED_1_5: {"skip_ratio": 1.5}, SkipMode.UNIFIED_2: {"skip_ratio": 2.0},
                SkipMode.CONFIDENT: {"exit_threshold": 0.9}}[self]


@dataclass(frozen=True)
class Settings:
    """The controls panel."""
    decoding: Decoding = Decoding.GREEDY
    temperature: float = 0.8        # decoding == SAMPLE
    top_p: float = 0.95             # decoding == SAMPLE
    num_beams: int = 4              # decoding == BEAM
    drafter: Drafter | None = Drafter.AUTO  # None: no speculation
    skip: SkipMode | None = None    # None: every decoder layer runs
    threads: int = 0                # onnxruntime intra-op threads; 0: all cores
    memory_budget_mb: float | None = None
    max_new_tokens: int = 64
    copy_bias: float | None = None  # editing: keep the source's next word unless the
    # model prefers another by more than this many logits; None: the package's default

    def for_task(self, task: Task) -> "Settings":
        """AUTO made concrete. Fix my text drafts from the input when decoding greedily: an
        edit copies most of its input, so the same answer takes a fraction of the decoder
        passes (and an editing model's rerank needs the whole answer: it could not stream).
        Free generation streams."""
        if self.drafter != Drafter.AUTO:
            return self
        options = {**replace(self, drafter=None).generation_options(), "draft": AUTO_DRAFT}
        # the engine's rule for "auto" (greedy search, every layer), with the task's drafter
        wanted = resolve_auto_draft(options, Drafter.INPUT.value if task == Task.FIX else None)
        return replace(self, drafter=wanted["draft"] and Drafter(wanted["draft"]))

    @property
    def streams(self) -> bool:
        """Stream token by token: greedy or sampling without a drafter. Beam search cannot
        stream, and a drafter's figures (acceptance) come with the whole answer."""
        return self.decoding != Decoding.BEAM and self.drafter is None and self.skip is None

    def generation_options(self) -> dict[str, Any]:
        """Engine.generate / Engine.stream keyword arguments (after for_task)."""
        if self.drafter == Drafter.AUTO:
            raise ValueError("Settings.for_task(task) first: the drafter is still 'auto'")
        opts: dict[str, Any] = {"max_new_tokens": self.max_new_tokens}
        if self.decoding == Decoding.SAMPLE:
            opts.update(do_sample=True, temperature=self.temperature, top_p=self.top_p)
        elif self.decoding == Decoding.BEAM:
            opts["num_beams"] = self.num_beams
        # always named: an Engine call without draft= would use the package's drafter
        opts["draft"] = self.drafter.value if self.drafter is not None else None
        if self.skip is not None:
            opts.update(self.skip.options())
        if self.memory_budget_mb is not None:
            opts["memory_budget_mb"] = self.memory_budget_mb
        if self.copy_bias is not None:
            opts["copy_bias"] = self.copy_bias
        return opts

    def to_json(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["decoding"] = self.decoding.value
        out["drafter"] = self.drafter.value if self.drafter else None
        out["skip"] = self.skip.value if self.skip else None
        return out


@dataclass(frozen=True)
class TextJob:
    task: Task
    text: str
    model: str | None   # a catalog id; None: the grammar model
    settings: Settings


@dataclass(frozen=True)
class AudioJob:
    model: str | None   # a catalog id; None: the first Whisper package
    threads: int = 0


def _bad(field: str, wanted: str, value: object) -> DemoRequestError:
    return DemoRequestError(f"{field} must be {wanted}, got {value!r}")


def _number(values: Mapping[str, object], name: str, default: float, lo: float, hi: float,
            integer: bool = False, low_open: bool = False) -> Any:
    value = values.get(name, default)
    kind = int if integer else (int, float)
    wanted = f"{'an integer' if integer else 'a number'} in {'(' if low_open else '['}{lo}, {hi}]"
    if isinstance(value, bool) or not isinstance(value, kind):
        raise _bad(name, wanted, value)
    if not (lo < value if low_open else lo <= value) or value > hi:
        raise _bad(name, wanted, value)
    return value


def _choice(values: Mapping[str, object], name: str, enum_type: type[enum.Enum],
            default: object, none_word: str | None = None) -> Any:
    value = values.get(name, default)
    if value is None or (none_word is not None and value == none_word):
        if none_word is None:
            raise _bad(name, f"one of {[e.value for e in enum_type]}", value)
        return None
    try:
        return enum_type(value)
    except ValueError:
        allowed = [e.value for e in enum_type] + ([none_word] if none_word else [])
        raise _bad(name, f"one of {allowed}", value) from None


def parse_settings(values: Mapping[str, object]) -> Settings:
    unknown = set(values) - {f.name for f in fields(Settings)}
    if unknown:
        raise DemoRequestError(f"unknown setting(s) {sorted(unknown)}; known: "
                               f"{[f.name for f in fields(Settings)]}")
    budget = values.get("memory_budget_mb")
    if budget is not None:
        budget = _number(values, "memory_budget_mb", 0, 0, 1 << 20, low_open=True)
    copy_bias = values.get("copy_bias")
    if copy_bias is not None:
        copy_bias = float(_number(values, "copy_bias", 0, 0, 20))
    return Settings(
        decoding=_choice(values, "decoding", Decoding, Decoding.GREEDY.value),
        temperature=float(_number(values, "temperature", 0.8, 0, 5, low_open=True)),
        top_p=float(_number(values, "top_p", 0.95, 0, 1, low_open=True)),
        num_beams=_number(values, "num_beams", 4, 1, 8, integer=True),
        drafter=_choice(values, "drafter", Drafter, Drafter.AUTO.value, none_word="none"),
        skip=_choice(values, "skip", SkipMode, None, none_word="none"),
        threads=_number(values, "threads", 0, 0, MAX_THREADS, integer=True),
        memory_budget_mb=None if budget is None else float(budget),
        max_new_tokens=_number(values, "max_new_tokens", 64, 1, 256, integer=True),
        copy_bias=copy_bias)


def check_text(text: object, limits: Limits) -> str:
    if not isinstance(text, str):
        raise _bad("text", "a string", text)
    if not text.strip():
        raise DemoRequestError("the text is empty: type a sentence first")
    if len(text) > limits.max_text_chars:
        raise DemoRequestError(f"the text has {len(text)} characters; the demo takes at most "
                               f"{limits.max_text_chars}")
    return text.strip()


def parse_text_job(payload: object, limits: Limits) -> TextJob:
    """A TextJob from the page's JSON: {task, text, model?, settings?}."""
    if not isinstance(payload, dict):
        raise DemoRequestError("the request body must be a JSON object")
    unknown = set(payload) - {"task", "text", "model", "settings"}
    if unknown:
        raise DemoRequestError(f"unknown field(s) {sorted(unknown)}")
    task = _choice(payload, "task", Task, Task.FIX.value)
    model = payload.get("model")
    if model is not None and not isinstance(model, str):
        raise _bad("model", "a model id from /api/models", model)
    if task == Task.GENERATE and model is None:
        raise DemoRequestError("choose a model for free generation")
    settings = payload.get("settings", {})
    if not isinstance(settings, dict):
        raise _bad("settings", "a JSON object", settings)
    return TextJob(task, check_text(payload.get("text"), limits), model, parse_settings(settings))


def parse_audio_job(query: Mapping[str, list[str]]) -> AudioJob:
    """An AudioJob from the query string: ?model=ID&threads=N (both optional)."""
    unknown = set(query) - {"model", "threads"}
    if unknown:
        raise DemoRequestError(f"unknown query parameter(s) {sorted(unknown)}")
    model = query.get("model", [None])[-1] or None
    threads_text = query.get("threads", ["0"])[-1]
    try:
        threads = int(threads_text)
    except ValueError:
        raise _bad("threads", "an integer", threads_text) from None
    return AudioJob(model, _number({"threads": threads}, "threads", 0, 0, MAX_THREADS,
                                   integer=True))
