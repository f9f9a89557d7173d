"""Speech to text with a Whisper package, on top of Seq2SeqRunner.

audio -> log-mel of the whole recording -> 30 s windows cut at `seek` -> encoder ->
decoder fed the prompt (<|startoftranscript|> [language] [task] [<|notimestamps|>]) in
ONE pass -> greedy or beam search (runtime/search.py) with Whisper's logit rules ->
segments. The windowing follows openai-whisper and faster-whisper: features of the
whole recording normalised against its loudest frame, each window zero-padded in the
log-mel domain to 3000 frames; without timestamps a window is one segment and the next
window starts where it ended; with timestamps the recording is cut at the last complete
segment (openai-whisper's rule). Not implemented: temperature fallback, conditioning
on the previous window's text, no-speech skipping, word timestamps."""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeseq.arch import Family
from edgeseq.errors import OptionsError, PackageError

from .audio import (
    HOP_LENGTH,
    N_FRAMES,
    SAMPLE_RATE,
    load_audio,
    log_mel_frames,
)
from .decoder import LayerPlan
from .early_exit import confident_exit, unified_skip_plan
from .engine import MAX_BEAMS
from .kv_cache import KVCache
from .logits import NEG, log_softmax, softmax
from .options import MAX_DRAFT, GenerationOptions, _check_type
from .search import DecodeSession, beam_search, greedy
from .spec_setup import self_drafter
from .speculative import Speculation, SpecStats, plain_while_off, speculative
from .whisper_tokens import WhisperTokens

if TYPE_CHECKING:
    from .engine import Engine

Audio = str | Path | bytes | np.ndarray


class Task(str, enum.Enum):
    TRANSCRIBE = "transcribe"
    TRANSLATE = "translate"  # speech in any language -> English text (multilingual models)


@dataclass(frozen=True)
class TranscribeOptions:
    language: str | None = None          # code such as "en"; None: detect (multilingual models)
    task: Task = Task.TRANSCRIBE
    timestamps: bool = False             # predict segment timestamps (no <|notimestamps|>)
    num_beams: int = 1                   # 1: greedy; > 1: beam search
    length_penalty: float = 1.0          # beam score = log-prob sum / length ** length_penalty
    early_stopping: bool = False         # beam search: stop once num_beams hypotheses finished
    max_new_tokens: int | None = None    # per window; None: what the 448 positions leave
    suppress_blank: bool = True          # no blank / <|endoftext|> as a window's first token
    suppress_tokens: bool = True         # the model's non-speech token list
    max_initial_timestamp: float | None = 1.0  # seconds; the first timestamp is no later
    # "layers": self-speculative greedy decoding (draft with the first decoder layers,
    # verify with all; the transcript is the plain greedy one). Without timestamps only:
    # their rules read the history, which a verify pass would see with drafts in it.
    draft: str | None = None
    max_draft: int = 8
    exit_layer: int | None = None        # None: adaptive exit layer and draft length
    # lossy layer skipping, as for text (runtime/early_exit.py); greedy without timestamps
    skip_ratio: float | None = None      # unified skipping: decoder layers / layers run
    exit_after: int | None = None        # run only the first N decoder layers
    exit_threshold: float | None = None  # CALM: exit when the top probability >= this

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not f.default:  # a default is valid (and most fields keep theirs)
                _check_type(f.name, f.type, value)
        if self.language is not None and not isinstance(self.language, str):
            raise OptionsError(f"language must be a code such as 'en', or None to detect it; "
                               f"got {self.language!r}")
        try:
            object.__setattr__(self, "task", Task(self.task))
        except ValueError:
            raise OptionsError(f"task must be 'transcribe' or 'translate', got {self.task!r}") from None
        if not 1 <= self.num_beams <= MAX_BEAMS:  # the cache holds every beam up front
            raise OptionsError(f"num_beams must be in 1..{MAX_BEAMS}, got {self.num_beams}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise OptionsError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.max_initial_timestamp is not None and self.max_initial_timestamp < 0:
            raise OptionsError(f"max_initial_timestamp must be >= 0, got {self.max_initial_timestamp}")
        if self.draft not in (None, "none", "layers"):
            raise OptionsError(f"transcription drafts with 'layers' or not at all, got {self.draft!r}")
        if self.draft == "none":
            object.__setattr__(self, "draft", None)
        if self.draft and (self.timestamps or self.num_beams > 1):
            raise OptionsError("draft='layers' needs greedy decoding without timestamps")
        if not 1 <= self.max_draft <= MAX_DRAFT:
            raise OptionsError(f"max_draft must be in 1..{MAX_DRAFT}, got {self.max_draft}")
        if self.exit_layer is not None and self.exit_layer < 1:
            raise OptionsError(f"exit_layer must be >= 1, got {self.exit_layer}")
        self._check_skipping()

    def _check_skipping(self) -> None:
        """The lossy layer-skipping options, with GenerationOptions' ranges (but see
        exit_threshold)."""
        lossy = [n for n in ("skip_ratio", "exit_after", "exit_threshold") if getattr(self, n) is not None]
        if len(lossy) > 1 or (lossy and (self.draft or self.timestamps or self.num_beams > 1)):
            raise OptionsError("one of skip_ratio, exit_after, exit_threshold, with greedy decoding "
                               "without timestamps or drafting")
        if self.skip_ratio is not None and not self.skip_ratio >= 1:
            raise OptionsError(f"skip_ratio must be >= 1, got {self.skip_ratio}")
        if self.exit_after is not None and self.exit_after < 1:
            raise OptionsError(f"exit_after must be >= 1, got {self.exit_after}")
        # 0 is taken (unlike generate's (0, 1]): every token exits at the first exit
        if self.exit_threshold is not None and not 0 <= self.exit_threshold <= 1:
            raise OptionsError(f"exit_threshold must be in [0, 1], got {self.exit_threshold}")

    @classmethod
    def from_kwargs(cls, options: dict[str, Any]) -> TranscribeOptions:
        """Options passed by keyword; an unknown name is refused, listing the known ones."""
        known = sorted(f.name for f in fields(cls))
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise OptionsError(f"unknown transcription option(s) {unknown}; known: {known}")
        return cls(**options)


@dataclass(frozen=True)
class Segment:
    start: float                 # seconds from the start of the recording
    end: float
    text: str
    tokens: tuple[int, ...] = ()  # text and timestamp ids, no special tokens


@dataclass
class TranscriptionStats:
    audio_s: float = 0.0
    windows: int = 0
    features_ms: float = 0.0
    encoder_ms: float = 0.0
    decoder_ms: float = 0.0
    first_token_ms: float = 0.0   # call start to the first token of the first window
    total_ms: float = 0.0
    new_tokens: int = 0
    decoder_passes: int = 0
    layers_executed: int = 0      # decoder layers run, summed over passes
    drafted: int = 0              # draft="layers": tokens drafted and accepted
    accepted: int = 0
    language_probability: float | None = None  # when the language was detected

    @property
    def real_time_factor(self) -> float:
        """Audio seconds transcribed per wall-clock second."""
        return self.audio_s / (self.total_ms / 1e3) if self.total_ms else 0.0


@dataclass
class TranscriptionResult:
    text: str
    segments: list[Segment]
    language: str | None
    stats: TranscriptionStats = field(default_factory=TranscriptionStats)


@dataclass(frozen=True)
class WindowResult:
    tokens: list[int]        # generated ids without <|endoftext|>
    language: str | None


# -- decoding: token history for the timestamp rules -----------------------------------
class _TrackedCache(KVCache):
    """A KV cache that also keeps the token ids fed so far, reordered with beams."""

    def __init__(self, layers: int, rows: int, heads: int, capacity: int, head_dim: int):
        super().__init__(layers, rows, heads, capacity, head_dim)
        self.tokens = np.zeros((rows, 0), np.int64)

    def reorder(self, rows: np.ndarray) -> None:
        super().reorder(rows)
        self.tokens = self.tokens[rows]

    def truncate(self, length: int) -> None:  # rejected drafts leave the history too
        super().truncate(length)
        self.tokens = self.tokens[:, :length]


class _TrackedSession(DecodeSession):
    def step(self, tokens: np.ndarray, plan=None) -> np.ndarray:
        self.cache.tokens = np.concatenate([self.cache.tokens, tokens], axis=1)
        return super().step(tokens, plan)


@dataclass(frozen=True)
class WhisperRules:
    """Logit rules in transformers' / openai-whisper's order: suppress blank at the first
    token, suppress the non-speech list, then (with timestamps) the timestamp rules:
    pairs of timestamps, never decreasing, the first token a timestamp no later than
    max_initial, and a timestamp whenever their summed probability beats every text token.
    Duck-types ScoreRules for runtime/search.py."""
    eos: int
    max_new_tokens: int
    prompt_length: int
    cache: _TrackedCache
    suppress: tuple[int, ...]
    begin_suppress: tuple[int, ...]
    timestamp_begin: int | None          # None: no timestamp rules
    no_timestamps: int
    max_initial_index: int | None

    no_repeat_ngram, reads_history, biases_copies = 0, False, False  # not Whisper's rules

    def choose(self, logits: np.ndarray, generated: int, history=None) -> np.ndarray:
        """Greedy tokens [rows] (ScoreRules.choose; every step applies the rules)."""
        return self.apply(logits.astype(np.float32), generated).argmax(axis=-1)

    def forces_or_bans(self, token: int, generated: int) -> bool:
        """ScoreRules.forces_or_bans: suppression can overrule `token`; timestamp rules
        always may (no rule here reads an n-gram history)."""
        return (self.timestamp_begin is not None or token in self.suppress or
                (generated == 0 and token in self.begin_suppress))

    def apply(self, scores: np.ndarray, generated: int, history=None) -> np.ndarray:
        """scores [rows, V] for the token after `generated` new tokens (in place)."""
        if generated == 0 and self.begin_suppress:
            scores[:, list(self.begin_suppress)] = NEG
        if self.suppress:
            scores[:, list(self.suppress)] = NEG
        if self.timestamp_begin is not None:
            self._timestamp_rules(scores, generated)
        return scores

    def _timestamp_rules(self, scores: np.ndarray, generated: int) -> None:
        begin = self.timestamp_begin
        scores[:, self.no_timestamps] = NEG
        for row, seq in enumerate(self.cache.tokens[:, self.prompt_length:]):
            last = len(seq) >= 1 and seq[-1] >= begin
            penultimate = len(seq) < 2 or seq[-2] >= begin
            if last:
                if penultimate:
                    scores[row, begin:] = NEG
                else:
                    scores[row, :self.eos] = NEG
            stamps = seq[seq >= begin]
            if stamps.size:  # never decrease; never repeat a closed pair's end
                floor = stamps[-1] if last and not penultimate else stamps[-1] + 1
                scores[row, begin:floor] = NEG
        if generated == 0:
            scores[:, :begin] = NEG
            if self.max_initial_index is not None:
                scores[:, begin + self.max_initial_index + 1:] = NEG
        logp = log_softmax(scores.astype(np.float32))
        with np.errstate(divide="ignore"):
            stamp_logp = np.log(np.exp(logp[:, begin:]).sum(axis=-1))
        take_stamp = stamp_logp > logp[:, :begin].max(axis=-1)
        scores[take_stamp, :begin] = NEG


# -- the transcriber -------------------------------------------------------------------
class Transcriber:
    def __init__(self, engine: Engine):
        if engine.arch.family != Family.WHISPER:
            raise PackageError(f"{engine.directory} holds a {engine.arch.family.value} model; "
                               "transcription needs a Whisper package")
        self.engine = engine
        self.runner = engine.runner
        self.tokens = WhisperTokens.from_manifest(engine.manifest.generation, engine.arch,
                                                  engine.directory)

    def transcribe(self, audio: Audio, sample_rate: int | None = None,
                   options: TranscribeOptions | None = None) -> TranscriptionResult:
        """Audio: a WAV path or bytes (at the rate the WAV states), or an array at
        `sample_rate` Hz (default 16 kHz; see runtime/audio.py for dtypes and layouts)."""
        opts = options or TranscribeOptions()
        language = self._check_language(opts)
        started = time.perf_counter()
        stats = TranscriptionStats()
        samples = load_audio(audio, source_rate=sample_rate)
        stats.audio_s = samples.size / SAMPLE_RATE
        mel = log_mel_frames(samples, self.tokens.n_mels)
        stats.features_ms = (time.perf_counter() - started) * 1e3
        segments: list[Segment] = []
        seek, content = 0, mel.shape[1]
        while seek < content:
            size = min(N_FRAMES, content - seek)
            window = np.zeros((1, self.tokens.n_mels, N_FRAMES), np.float32)
            window[0, :, :size] = mel[:, seek:seek + size]
            decoded = self.decode_window(window[0], opts, language, stats, started)
            language = decoded.language
            new, seek = self._segments(decoded.tokens, seek, size, opts.timestamps)
            segments.extend(new)
        stats.total_ms = (time.perf_counter() - started) * 1e3
        text = "".join(s.text for s in segments).strip()
        return TranscriptionResult(text, segments, language, stats)

    def _check_language(self, opts: TranscribeOptions) -> str | None:
        t = self.tokens
        if not t.is_multilingual:
            if opts.language not in (None, "en") or opts.task == Task.TRANSLATE:
                raise OptionsError("this is an English-only Whisper model: it takes no language "
                                   "other than 'en' and no translate task")
            return "en"
        if opts.language is not None and opts.language not in t.languages:
            raise OptionsError(f"language {opts.language!r} is not one of this model's "
                               f"{len(t.languages)} languages: {', '.join(t.languages)}")
        return opts.language

    def _prompt(self, language: str | None, opts: TranscribeOptions) -> list[int]:
        t = self.tokens
        prompt = [t.sot]
        if t.is_multilingual:
            task = t.transcribe if opts.task == Task.TRANSCRIBE else t.translate
            prompt += [t.languages[language], task]
        return prompt if opts.timestamps else prompt + [t.no_timestamps]

    def decode_window(self, features: np.ndarray, options: TranscribeOptions | None = None,
                      language: str | None = None, stats: TranscriptionStats | None = None,
                      started: float | None = None) -> WindowResult:
        """One 30 s window: log-mel float32 [n_mels, 3000] -> generated tokens (without
        <|endoftext|>) and the language (detected when None on a multilingual model).
        `stats` (optional) accumulates timings; `started` is the call's start time."""
        opts = options or TranscribeOptions()
        stats = stats if stats is not None else TranscriptionStats()
        started = started if started is not None else time.perf_counter()
        tick = time.perf_counter()
        state = self.runner.encode_features(np.ascontiguousarray(features[None], np.float32))
        stats.encoder_ms += (time.perf_counter() - tick) * 1e3
        tick = time.perf_counter()
        tokens, language = self._decode(state, language, opts, stats, started)
        stats.decoder_ms += (time.perf_counter() - tick) * 1e3
        stats.windows += 1
        stats.new_tokens += len(tokens)
        return WindowResult(tokens, language)

    def _decode(self, state, language: str | None, opts: TranscribeOptions,
                stats: TranscriptionStats, started: float) -> tuple[list[int], str | None]:
        t, a = self.tokens, self.engine.arch
        rows = opts.num_beams
        if rows > 1:
            state = state.select(np.zeros(rows, np.int64))
        fed = 0
        cache = _TrackedCache(a.decoder_layers, rows, a.num_heads, t.max_target_positions,
                              a.head_dim)
        session = _TrackedSession(self.runner, state, cache)
        if t.is_multilingual and language is None:
            logits = session.step(np.full((rows, 1), t.sot, np.int64))[0, -1]
            language, stats.language_probability = self._detect(logits)
            fed = 1
        prompt = self._prompt(language, opts)
        if len(prompt) - 1 > fed:
            session.step(np.tile(np.array(prompt[fed:-1], np.int64), (rows, 1)))
        budget = t.max_target_positions - len(prompt) + 1
        max_new = min(opts.max_new_tokens or budget, budget)
        rules = self._rules(cache, len(prompt), max_new, opts)
        if rows == 1:
            tokens: list[int] = []
            start = np.array([prompt[-1]])
            session.plan = self._layer_plan(opts)
            if opts.exit_threshold is not None:
                layers = a.decoder_layers
                steps = confident_exit(session, start, rules, t.eot, list(range(1, layers + 1)),
                                       opts.exit_threshold, "top1", lambda scores: scores.argmax(axis=-1))
            elif opts.draft is None:
                steps = greedy(session, start, rules, t.eot)
            else:
                steps = self._speculative(session, start, rules, prompt, max_new, opts)
            for step in steps:
                if not stats.first_token_ms:
                    stats.first_token_ms = (time.perf_counter() - started) * 1e3
                tokens.extend(int(x) for x in step[0])
        else:
            search = GenerationOptions(max_new_tokens=max_new, num_beams=rows,
                                       length_penalty=opts.length_penalty,
                                       early_stopping=opts.early_stopping)
            tokens = beam_search(session, 1, prompt[-1], rules, t.eot, search).sequences[0]
            if not stats.first_token_ms:
                stats.first_token_ms = (time.perf_counter() - started) * 1e3
        stats.decoder_passes += session.passes
        stats.layers_executed += sum(session.layers_executed)
        if session.spec is not None:
            stats.drafted += session.spec.drafted
            stats.accepted += session.spec.accepted
        return (tokens[:tokens.index(t.eot)] if t.eot in tokens else tokens), language

    def _layer_plan(self, opts: TranscribeOptions) -> LayerPlan | None:
        layers = self.engine.arch.decoder_layers
        if opts.skip_ratio is not None:
            return unified_skip_plan(layers, opts.skip_ratio)
        if opts.exit_after is not None:
            if not 1 <= opts.exit_after <= layers:
                raise OptionsError(f"exit_after must be in 1..{layers}, got {opts.exit_after}")
            return LayerPlan.first(opts.exit_after, layers)
        return None

    def _speculative(self, session: _TrackedSession, start: np.ndarray, rules: WhisperRules,
                     prompt: list[int], max_new: int, opts: TranscribeOptions):
        """Greedy self-speculative decoding; acceptance and costs are learned across
        windows and calls (the engine's draft controller for these options)."""
        search = GenerationOptions(max_new_tokens=max_new, draft="layers", max_draft=opts.max_draft,
                                   exit_layer=opts.exit_layer)
        control = self.engine._controller(search)
        session.spec = session.spec or SpecStats()
        if self.engine._drafting_off(search, 1):  # as generate() decides: plain greedy's loop
            return plain_while_off(session, start, rules, self.tokens.eot, session.spec, control)
        drafter = self_drafter(self.engine, session, rules, search, control)
        return speculative(session, start, rules, self.tokens.eot, [prompt],
                           Speculation(drafter, control, session.spec))

    def _detect(self, logits: np.ndarray) -> tuple[str, float]:
        """The language token with the highest logit after <|startoftranscript|>."""
        codes = list(self.tokens.languages)
        probs = softmax(logits[[self.tokens.languages[c] for c in codes]][None])[0]
        best = int(probs.argmax())
        return codes[best], float(probs[best])

    def _rules(self, cache: _TrackedCache, prompt_length: int, max_new: int,
               opts: TranscribeOptions) -> WhisperRules:
        t = self.tokens
        max_initial = None
        if opts.max_initial_timestamp is not None:
            max_initial = round(opts.max_initial_timestamp / t.time_precision)
        return WhisperRules(
            eos=t.eot, max_new_tokens=max_new, prompt_length=prompt_length, cache=cache,
            suppress=t.suppress_tokens if opts.suppress_tokens else (),
            begin_suppress=t.begin_suppress_tokens if opts.suppress_blank else (),
            timestamp_begin=t.timestamp_begin if opts.timestamps else None,
            no_timestamps=t.no_timestamps, max_initial_index=max_initial)

    def _segments(self, tokens: list[int], seek: int, size: int,
                  timestamps: bool) -> tuple[list[Segment], int]:
        """Split a window's tokens into segments; return them and the next seek (frames)."""
        t = self.tokens
        offset = seek * HOP_LENGTH / SAMPLE_RATE
        if not timestamps:
            return self._keep([(offset, offset + size * HOP_LENGTH / SAMPLE_RATE, tokens)]), seek + size
        begin, precision = t.timestamp_begin, t.time_precision
        is_stamp = [tok >= begin for tok in tokens]
        single_ending = len(tokens) >= 2 and not is_stamp[-2] and is_stamp[-1]
        cuts = [i for i in range(1, len(tokens)) if is_stamp[i] and is_stamp[i - 1]]
        if not cuts:
            stamps = [tok for tok in tokens if tok >= begin]
            duration = size * HOP_LENGTH / SAMPLE_RATE
            if stamps and stamps[-1] != begin:
                duration = (stamps[-1] - begin) * precision
            return self._keep([(offset, offset + duration, tokens)]), seek + size
        if single_ending:
            cuts.append(len(tokens))
        pieces, last = [], 0
        for cut in cuts:
            piece = tokens[last:cut]
            pieces.append((offset + (piece[0] - begin) * precision,
                           offset + (piece[-1] - begin) * precision, piece))
            last = cut
        advance = (tokens[last - 1] - begin) * t.input_stride
        if single_ending or advance <= 0:  # no speech after the last timestamp (or a
            return self._keep(pieces), seek + size  # segment closed at 0.00: never stall)
        # the last segment is unfinished: start the next window where it opened
        return self._keep(pieces), seek + advance

    def _keep(self, pieces: list[tuple[float, float, list[int]]]) -> list[Segment]:
        """Segments with text (faster-whisper drops empty and zero-length ones)."""
        codec, eot = self.engine.codec, self.tokens.eot
        kept = []
        for start, end, tokens in pieces:
            text_ids = [tok for tok in tokens if tok < eot]
            text = codec.decode(text_ids)
            empty = not text.strip() if codec.has_tokenizer else not text_ids
            if start != end and not empty:
                kept.append(Segment(start, end, text, tuple(tokens)))
        return kept


def transcribe(engine: Engine, audio: Audio, sample_rate: int | None = None,
               **options: Any) -> TranscriptionResult:
    """Transcribe `audio` with a Whisper package. Options: TranscribeOptions fields."""
    return Transcriber(engine).transcribe(audio, sample_rate, TranscribeOptions.from_kwargs(options))
