"""The figures panel: latency, rate, speculation, layers per pass, and memory, taken from
the engine's GenerationStats or, for a streamed answer, timed by the demo itself."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass

MB = 1 << 20


def rss_bytes() -> int | None:
    """Resident memory of this process from /proc/self/statm; None where there is no
    /proc (macOS, Windows): the page then shows no memory figure rather than a guess."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            resident_pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Memory:
    rss_mb: float | None          # the whole demo process: every loaded model included
    budget_mb: float | None       # memory_budget_mb of the request
    planned_mb: float | None      # the SpecMemo plan's predicted peak for this request
    reduced: tuple[str, ...] = ()  # what the plan gave up to fit the budget

    @classmethod
    def now(cls, budget_mb: float | None, plan: dict | None) -> "Memory":
        rss = rss_bytes()
        return cls(rss_mb=rss / MB if rss is not None else None, budget_mb=budget_mb,
                   planned_mb=plan["predicted"]["total"] / MB if plan else None,
                   reduced=tuple(plan["reduced"]) if plan else ())


@dataclass(frozen=True)
class Figures:
    timed_by: str                  # "engine" (GenerationStats) or "stream" (the demo's clock)
    first_token_ms: float | None   # request start to the first token (encoder included);
                                   # None for beam search, which settles tokens only at the end
    total_ms: float
    tokens: int                    # engine: generated tokens; stream: text pieces (one per
                                   # token that adds text, so EOS is not counted)
    tokens_per_s: float            # after the first token (beam search: over the whole call)
    threads: int
    memory: Memory
    decoder_passes: int | None = None
    layers_per_pass: float | None = None   # layer drafting or skipping: layers run per token
    decoder_layers: int | None = None
    speculation: dict | None = None        # drafted, accepted, acceptance_rate, histogram
    audio_s: float | None = None           # transcription only
    real_time_factor: float | None = None  # transcription: audio seconds per second

    def to_json(self) -> dict:
        return asdict(self)


def stream_figures(started: float, first: float | None, end: float, pieces: int,
                   threads: int, memory: Memory) -> Figures:
    """Figures of a streamed answer from the demo's own perf_counter readings."""
    first = first if first is not None else end
    rate = (pieces - 1) / (end - first) if pieces > 1 and end > first else 0.0
    return Figures("stream", (first - started) * 1e3, (end - started) * 1e3, pieces, rate,
                   threads, memory)


def engine_figures(stats, threads: int, decoder_layers: int, with_layers: bool,
                   budget_mb: float | None, beam: bool) -> Figures:
    """Figures of a whole answer from its GenerationStats."""
    first_ms, rate = stats.first_token_ms, stats.tokens_per_s
    if beam:  # GenerationStats has no first token for beam search: report the whole call
        first_ms = None
        rate = stats.new_tokens / (stats.total_ms / 1e3) if stats.total_ms > 0 else 0.0
    return Figures("engine", first_ms, stats.total_ms, stats.new_tokens,
                   rate, threads, Memory.now(budget_mb, stats.memory_plan),
                   decoder_passes=stats.decoder_passes,
                   layers_per_pass=stats.layers_per_token if with_layers else None,
                   decoder_layers=decoder_layers if with_layers else None,
                   speculation=stats.speculation)


def transcription_figures(stats, threads: int) -> Figures:
    """Figures of a transcription from its TranscriptionStats (fields read defensively:
    the transcription module is young)."""
    new_tokens = int(getattr(stats, "new_tokens", 0))
    decoder_s = float(getattr(stats, "decoder_ms", 0.0)) / 1e3
    rtf = getattr(stats, "real_time_factor", None)
    return Figures("engine", float(getattr(stats, "first_token_ms", 0.0)),
                   float(getattr(stats, "total_ms", 0.0)), new_tokens,
                   new_tokens / decoder_s if decoder_s > 0 else 0.0, threads,
                   Memory.now(None, None), decoder_passes=getattr(stats, "decoder_passes", None),
                   audio_s=getattr(stats, "audio_s", None),
                   real_time_factor=float(rtf) if rtf is not None else None)
