"""The public engine: load a package, generate (greedy, sampling, beam) and stream."""
from __future__ import annotations

import time
from importlib import resources
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

import numpy as np

from edgeseq import names
from edgeseq.arch import ArchSpec, Family, Positions
from edgeseq.errors import InputError, OptionsError, PackageError
from edgeseq.manifest import Manifest, read_manifest, verify_files
from .decoder import LayerPlan, Seq2SeqRunner
from .early_exit import confident_exit, unified_skip_plan
from .logits import ScoreRules
from .memory import MB, Plan, Request, check_caches_fit, package_weight_bytes, plan
from .options import GenerationOptions, is_engine, resolve_auto_draft
from .batching import BatchSchedule
from .draft_control import DraftController
from .draft_figures import DraftFigures
from .drafters import NgramDrafter
from .providers import SessionConfig, check_onnxruntime
from .rerank import PassScores, held_logit_bytes, prefer_source
from .search import DecodeSession, beam_search, greedy, sample, token_chooser
from .source_align import SourceAligner
from .spec_setup import make_drafter
from .speculative import Speculation, SpecStats, plain_while_off, speculative
from .text import Inputs, TextCodec, normalise_inputs



MAX_NEW_TOKENS = 8192  # the KV cache for the whole length is allocated before decoding
MAX_BEAMS = 64


@dataclass
class GenerationStats:
    first_token_ms: float = 0.0   # call start to first generated token (encoder included)
    total_ms: float = 0.0
    new_tokens: int = 0           # generated tokens of the longest row
    tokens_per_s: float = 0.0     # decode rate after the first token
    decoder_passes: int = 0       # every decoder pass, draft and rerank_source passes included
    layers_per_pass: float = 0.0  # decoder layers executed per generation pass, averaged
    layers_per_token: float = 0.0 # decoder layers executed per generated token
    speculation: dict | None = None  # drafted, accepted, acceptance rate, histogram
    memory_plan: dict | None = None  # what memory_budget_mb chose, and predicted bytes


@dataclass
class GenerationResult:
    text: str
    token_ids: list[int]          # generated ids, without the decoder start token
    stats: GenerationStats = field(default_factory=GenerationStats)
    source_kept: bool = False     # rerank_source chose the unchanged input over the decoded output


def resolve_package(package: str | Path) -> Path:
    if not isinstance(package, (str, Path)):
        raise PackageError(f"a package is a directory path or \"default\", got {package!r}")
    if str(package) == "default":
        default = Path(str(resources.files("edgeseq") / "default_model"))
        if not (default / names.MANIFEST_FILE).is_file():
            raise PackageError("the embedded default model is not installed in this checkout")
        return default
    return Path(package)


class Engine:
    """A loaded package. Thread safety: one Engine may be shared by many threads.
    Each generate / stream / transcribe call owns its KV cache, encoder state, RNG and
    drafter; onnxruntime sessions and the tokenizer are only read. Shared on purpose: the
    n-gram table of draft="ngram" (locked): greedy output never depends on it, but sampled
    output with draft="ngram" does (as it does on adaptive draft lengths, which follow
    measured timings: for reproducible seeded sampling with a drafter, pass
    adaptive_draft=False and avoid "ngram"), and what drafting and batch schedules have
    measured (updates race benignly: they only steer speed). Not safe: iterating or closing one stream
    from two threads at once (Python refuses: "generator already executing"). Each
    concurrent call holds its own memory (memory_budget_mb is per call), and runs with
    `threads` intra-op threads: with many callers, load with threads=1."""

    def __init__(self, directory: Path, manifest: Manifest, config: SessionConfig):
        self.directory = directory
        self.manifest = manifest
        self.arch = manifest.arch
        self.runner = Seq2SeqRunner(directory, manifest, config)
        tokenizer = directory / names.TOKENIZER_FILE if manifest.has_tokenizer else None
        self.codec = TextCodec(tokenizer)
        self.config = config
        self.ngram = NgramDrafter()  # n-grams of this engine's earlier outputs (draft="ngram")
        self._figures = DraftFigures()  # drafting's controllers and batch schedules

    @classmethod
    def load(cls, package: str | Path, provider: str = "cpu", threads: int = 0,
             spin: bool = True, shared_pool: bool = False,
             encoder_threads: int | None = None,
             unsigned_int8_weights: bool | None = None,
             fp32_decoder_products: bool | None = None,
             even_decoder_rows: bool | None = None) -> "Engine":
        """A package directory, or "default" (the embedded model), checked against its
        manifest before any session exists. The session options are SessionConfig's
        (runtime/providers.py), where each is explained: `provider` ("cpu", "cuda", ...),
        `threads` (0: onnxruntime's default), `spin`, `shared_pool`, `encoder_threads`,
        `unsigned_int8_weights` (None: int8 encoder weights as uint8 only on x86 CPUs
        without VNNI, runtime/integer_gemm.py) and `fp32_decoder_products` (None: a small
        int8 decoder multiplies in fp32 on x86 CPUs without VNNI,
        runtime/decoder_products.py) and `even_decoder_rows` (None: passes of an even
        number of rows where this CPU pairs rows, for packages that recommend a drafter,
        runtime/nbits_rows.py)."""
        check_onnxruntime()
        config = SessionConfig(provider=provider, threads=threads, spin=spin,
                               shared_pool=shared_pool, encoder_threads=encoder_threads,
                               unsigned_int8_weights=unsigned_int8_weights,
                               fp32_decoder_products=fp32_decoder_products,
                               even_decoder_rows=even_decoder_rows)
        directory = resolve_package(package)
        manifest = read_manifest(directory)
        verify_files(directory, manifest)
        return cls(directory, manifest, config)

    def providers(self) -> dict[str, list[str]]:
        """The execution providers each graph's session really runs on."""
        return {"encoder": self.runner.encoder.get_providers(),
                "decoder": self.runner.decoder.get_providers()}

    def placement(self) -> dict[str, dict[str, dict[str, int]]]:
        """Per graph, operator type -> provider -> how many of its operators that provider
        ran, profiled over one encoder run and one decoder pass (runtime/placement.py)."""
        from .placement import operator_placement
        return operator_placement(self)

    # -- inputs ---------------------------------------------------------------------
    def _batch_row(self, index: int, item: str | list[int], opts: GenerationOptions,
                   is_batch: bool) -> list[int]:
        """_source_ids, an error naming which input of a batch it is about."""
        try:
            return self._source_ids(item, opts)
        except InputError as err:
            if not is_batch:
                raise
            raise InputError(f"input {index}: {err}") from None

    def _source_ids(self, item: str | list[int], opts: GenerationOptions) -> list[int]:
        ids = self.codec.encode(item) if isinstance(item, str) else item
        if not ids:
            raise InputError("input has no tokens")
        vocab = self.arch.vocab_size
        if min(ids) < 0 or max(ids) >= vocab:
            if isinstance(item, str):  # a few checkpoints' tokenizers outgrow their embeddings
                raise InputError(f"the package's tokenizer gave token id {max(ids)}, past the "
                                 f"model's vocabulary of {vocab}: its tokenizer.json does not "
                                 "match the model")
            raise InputError(f"token ids must be in 0..{vocab - 1}")
        limit = self.arch.max_source_positions
        if len(ids) > limit:
            if not opts.truncate_input:
                raise InputError(f"input has {len(ids)} tokens; this model takes at most {limit} "
                                 "(truncate_input=True, on the CLI --truncate-input, keeps the "
                                 "first tokens)")
            ids = ids[:limit - 1] + [self.manifest.special.eos]
        return ids

    def _options(self, options: dict) -> GenerationOptions:
        if self.arch.family == Family.WHISPER:  # its decoder takes audio features, not text
            raise InputError(f"{self.directory} is a Whisper package: transcribe audio with "
                             "engine.transcribe(...) (CLI: edgeseq transcribe PKG audio.wav)")
        known = set(GenerationOptions.__dataclass_fields__)
        unknown = sorted(set(options) - known)
        if unknown:
            raise OptionsError(f"unknown option(s) {unknown}; known: {sorted(known)}")
        return GenerationOptions(**resolve_auto_draft(options, self.manifest.generation.get("draft")))

    def _check_target_length(self, opts: GenerationOptions) -> None:
        if opts.max_new_tokens > MAX_NEW_TOKENS or opts.num_beams > MAX_BEAMS:
            raise OptionsError(f"max_new_tokens must be <= {MAX_NEW_TOKENS} and num_beams <= "
                               f"{MAX_BEAMS} (the cache is allocated up front)")
        if self.arch.positions != Positions.RELATIVE and \
                opts.max_new_tokens + 1 > self.arch.max_target_positions:
            raise InputError(f"max_new_tokens={opts.max_new_tokens} exceeds this model's "
                             f"{self.arch.max_target_positions - 1} decoder positions")

    def _batch(self, rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), self.manifest.special.pad, np.int64)
        mask = np.zeros((len(rows), width), np.int64)
        for i, row in enumerate(rows):
            ids[i, :len(row)], mask[i, :len(row)] = row, 1
        return ids, mask

    def _rules(self, opts: GenerationOptions, rows: list[list[int]], copies: int = 1) -> ScoreRules:
        """The score rules of one call; `rows`: its sources, `copies` decoder rows each."""
        gen = self.manifest.generation
        copy_bias = float(gen.get("copy_bias") or 0.0) if opts.copy_bias is None else opts.copy_bias
        return ScoreRules(eos=self.manifest.special.eos, min_new_tokens=opts.min_new_tokens,
                          max_new_tokens=opts.max_new_tokens,
                          suppress=tuple(gen.get("suppress_tokens") or ()),
                          forced_bos=gen.get("forced_bos"), forced_eos=gen.get("forced_eos"),
                          no_repeat_ngram=(gen.get("no_repeat_ngram_size") or 0
                                           if opts.no_repeat_ngram_size is None else opts.no_repeat_ngram_size),
                          copy_bias=copy_bias,
                          aligner=SourceAligner(rows, copies) if copy_bias else None)

    def _reranks(self, opts: GenerationOptions) -> bool:
        if opts.rerank_source is not None:
            return opts.rerank_source
        return bool(self.manifest.generation.get("rerank_source")) and not opts.do_sample

    def _keep_sources(self, session: DecodeSession, rows: list[list[int]],
                      results: list[GenerationResult], copies: int = 1) -> None:
        """rerank_source: replace outputs the model scores below their unchanged input.
        The session's cache rows come in `copies` (beams) per input."""
        sp = self.manifest.special
        keep = prefer_source(session, sp.decoder_start, sp.pad, rows,
                             [r.token_ids for r in results], copies, seen=session.scores)
        for i, kept in enumerate(keep):
            if kept:
                ids = self._result(np.array(rows[i], np.int64), results[i].stats)
                results[i] = replace(ids, source_kept=True)

    # -- generation -----------------------------------------------------------------
    def _session(self, rows: list[list[int]], copies: int, opts: GenerationOptions) -> DecodeSession:
        ids, mask = self._batch(rows)
        state = self.runner.encode(ids, mask)
        if copies > 1:
            state = state.select(np.repeat(np.arange(len(rows)), copies))
        cache = self.runner.new_cache(len(rows) * copies, opts.max_new_tokens + 1)
        return DecodeSession(self.runner, state, cache, plan=self._layer_plan(opts))

    def _layer_plan(self, opts: GenerationOptions) -> LayerPlan | None:
        layers = self.arch.decoder_layers
        if opts.exit_layers is not None and not (
                opts.exit_layers and all(1 <= e <= layers for e in opts.exit_layers)):
            raise OptionsError(f"exit_layers must name decoder layers in 1..{layers}, "
                               f"got {opts.exit_layers}")
        if opts.skip_ratio is not None:
            return unified_skip_plan(layers, opts.skip_ratio)
        if opts.exit_after is not None:
            if opts.exit_after > layers:
                raise OptionsError(f"exit_after must be <= {layers} decoder layers")
            return LayerPlan.first(opts.exit_after, layers)
        return None

    def _token_steps(self, rows: list[list[int]], opts: GenerationOptions,
                     session: DecodeSession) -> Iterator[np.ndarray]:
        start = np.full(len(rows), self.manifest.special.decoder_start, np.int64)
        rules, pad = self._rules(opts, rows), self.manifest.special.pad
        if opts.draft is not None:
            control = self._controller(opts, len(rows))
            session.spec = SpecStats()
            if not opts.do_sample and self._drafting_off(opts, len(rows)):
                # rerank_source then scores both candidates in one pass after decoding, as
                # plain greedy does (holding every pass's logits instead cost a drafter that
                # was off 9-16% of plain greedy's time: JFLEG dev, skip-set drafting)
                session.scores = None
                return plain_while_off(session, start, rules, pad, session.spec, control)
            drafter, sampler = make_drafter(self, opts, session, rows, rules, control)
            return speculative(session, start, rules, pad, rows,
                               Speculation(drafter, control, session.spec, sampler, opts.seed))
        if opts.exit_threshold is not None:
            exits = list(opts.exit_layers or self.manifest.exits.get("layers") or
                         range(1, self.arch.decoder_layers + 1))
            return confident_exit(session, start, rules, pad, exits, opts.exit_threshold,
                                  opts.exit_measure, token_chooser(opts))
        if opts.do_sample:
            return sample(session, start, rules, pad, opts)
        return greedy(session, start, rules, pad)

    def _drafting_off(self, opts: GenerationOptions, batch: int) -> bool:
        """Drafting is off for these options and batch size, and no probe is due within
        a call (DraftController.off_for_call). Never for a drafter that names
        situations: one of them may pay on its own while the way is off."""
        if opts.draft == "input" or callable(getattr(opts.draft, "situation", None)):
            return False
        return self._controller(opts, batch).off_for_call()

    def _controller(self, opts: GenerationOptions, batch: int = 1) -> DraftController:
        """What a drafter's acceptance and costs were is learned across calls (requests are
        often short: a fresh controller would spend them re-learning), per batch size: a
        batch's pass costs more, and its rows accept only their shortest run together.
        Non-adaptive calls get their own. Concurrent calls share it; its updates are
        benign races."""
        if not opts.adaptive_draft:
            return DraftController(opts.max_draft, adaptive=False)
        return self._figures.get("controller", opts, batch, lambda: (
            DraftController.for_copying(opts.max_draft) if opts.draft == "input"
            else DraftController(opts.max_draft)))

    def generate(self, inputs: Inputs, **options) -> GenerationResult | list[GenerationResult]:
        """Generate for a string, a list of strings, token ids, or a list of token id lists.
        Returns one result, or a list for a list input. Options: GenerationOptions fields."""
        opts = self._options(options)
        self._check_target_length(opts)
        items, is_batch = normalise_inputs(inputs)
        started = time.perf_counter()
        rows = [self._batch_row(i, item, opts, is_batch) for i, item in enumerate(items)]
        opts, batch, chosen = self._apply_budget(opts, rows)
        results: list[GenerationResult] = []
        while len(results) < len(rows):
            results += self._next_chunk(rows[len(results):], batch, opts, started)
        for r in results:
            r.stats.memory_plan = chosen.to_json() if chosen else None
        return results if is_batch else results[0]

    def _next_chunk(self, rows: list[list[int]], batch: int, opts: GenerationOptions,
                    started: float) -> list[GenerationResult]:
        """Decode the next `batch` of `rows` together, or, speculating, one after another
        when speculate_rows or the measured schedule says rows go faster that way."""
        chunk = rows[:batch]
        schedule = self._schedule(opts, batch) if len(chunk) > 1 else None
        # one row after another pays only through each row's own drafts: not while
        # drafting one row is off (JFLEG dev, n-gram drafting: 0.58x batched decoding)
        alone = bool(opts.speculate_rows) if schedule is None else \
            schedule.rows_alone(may_pay=not self._drafting_off(opts, 1))
        decode = self._generate_beam if opts.num_beams > 1 else self._generate_steps
        began = time.perf_counter()
        if alone and opts.draft is not None:
            results = decode(chunk[:1], opts, started)
            warmed = len(results)  # the first row warms the one-row shapes up: not measured
            began = time.perf_counter()
            results += [r for row in chunk[1:] for r in decode([row], opts, started)]
        else:
            results, warmed = decode(chunk, opts, started), 0
        if schedule is not None:
            schedule.record(alone, sum(len(r.token_ids) for r in results[warmed:]),
                            time.perf_counter() - began, len(chunk), warm=warmed > 0)
        return results

    def _schedule(self, opts: GenerationOptions, batch: int) -> BatchSchedule | None:
        """The measured choice between decoding `batch` speculating rows together or one
        after another (runtime/batching.py); None when there is no choice to measure:
        no drafting, one row, the caller chose (speculate_rows), or adaptive_draft=False
        (which keeps timings out of decoding)."""
        if opts.draft is None or batch == 1 or opts.speculate_rows is not None or \
                not opts.adaptive_draft:
            return None
        return self._figures.get("schedule", opts, batch, lambda: BatchSchedule(batch))

    def draft_planner(self, **options) -> DraftController:
        """The draft planner that generate() with these options uses for one input (made
        if new): its summary() says what drafting has measured on this engine."""
        return self._controller(self._options(options))

    def resident_weight_bytes(self) -> int:
        """What the memory model counts for this engine's loaded weights."""
        sessions = self.runner.sessions
        return package_weight_bytes(self.manifest, sessions.unsigned_weight_bytes,
                                    sessions.fp32_product_bytes)

    def memory_plan(self, budget_mb: float, request: Request,
                    draft_arch: ArchSpec | None = None) -> Plan:
        """The SpecMemo plan for `request` under `budget_mb` (MemoryBudgetError if none);
        `draft_arch`: the draft model's shape when drafting with one."""
        if isinstance(budget_mb, bool) or not isinstance(budget_mb, (int, float)) or \
                not 0 < budget_mb < float("inf"):
            raise OptionsError(f"a memory budget must be a finite number of MB > 0, got {budget_mb!r}")
        if request.max_new_tokens > MAX_NEW_TOKENS:
            raise OptionsError(f"max_new_tokens must be <= {MAX_NEW_TOKENS}")
        weights = self.resident_weight_bytes()
        return plan(self.arch, weights, int(budget_mb * MB), request, draft_arch)

    def _apply_budget(self, opts: GenerationOptions, rows: list[list[int]]):
        if opts.memory_budget_mb is None:
            check_caches_fit(self.arch, len(rows) * opts.num_beams, max(len(r) for r in rows),
                             opts.max_new_tokens)
            return opts, len(rows), None
        other = opts.draft.manifest if is_engine(opts.draft) else None
        wanted = Request(batch=1 if opts.speculate_rows else len(rows) * opts.num_beams,
                         source_length=max(len(r) for r in rows),
                         max_new_tokens=opts.max_new_tokens,
                         draft=opts.max_draft if opts.draft is not None else 0,
                         draft_model_bytes=opts.draft.resident_weight_bytes() if other else 0,
                         rerank_source=self._reranks(opts),
                         even_rows=self.runner.sessions.even_rows)
        chosen = self.memory_plan(opts.memory_budget_mb, wanted, other.arch if other else None)
        r = chosen.request
        opts = replace(opts, max_new_tokens=r.max_new_tokens,
                       min_new_tokens=min(opts.min_new_tokens, r.max_new_tokens),
                       draft=opts.draft if r.draft else None,
                       speculate_rows=opts.speculate_rows if r.draft else None,
                       max_draft=max(1, r.draft), exit_layer=opts.exit_layer if r.draft else None,
                       draft_skip=opts.draft_skip if r.draft else None)
        return opts, max(1, r.batch // opts.num_beams), chosen

    def _generate_steps(self, rows, opts, started) -> list[GenerationResult]:
        session = self._session(rows, 1, opts)
        if self._reranks(opts) and opts.draft is not None:  # greedy: sampling never reranks
            session.scores = PassScores(len(rows), source_drafted=opts.draft == "input",
                                        held_bytes=held_logit_bytes(rows, self.arch.vocab_size,
                                                                      opts.max_draft))
        chunks, first = [], None
        for tokens in self._token_steps(rows, opts, session):
            chunks.append(tokens)
            first = first or time.perf_counter()
        generated = np.concatenate(chunks, axis=1)
        results = [self._result(row, GenerationStats()) for row in generated]
        if self._reranks(opts):
            self._keep_sources(session, rows, results)
        stats = self._stats(started, first, generated.shape[1], session)
        for r in results:
            r.stats = stats
            self.ngram.learn(r.token_ids)
        return results

    def _generate_beam(self, rows, opts, started) -> list[GenerationResult]:
        session = self._session(rows, opts.num_beams, opts)
        best = beam_search(session, len(rows), self.manifest.special.decoder_start,
                           self._rules(opts, rows, opts.num_beams), self.manifest.special.pad, opts)
        results = [self._result(np.array(seq, np.int64), GenerationStats()) for seq in best.sequences]
        if self._reranks(opts):
            self._keep_sources(session, rows, results, copies=opts.num_beams)
        stats = self._stats(started, None, max(len(s) for s in best.sequences), session)
        for r in results:
            r.stats = stats
        return results

    def _result(self, row: np.ndarray, stats: GenerationStats) -> GenerationResult:
        ids = row.tolist()
        eos = self.manifest.special.eos
        if eos in ids:
            ids = ids[:ids.index(eos) + 1]
        return GenerationResult(self.codec.decode(ids), ids, stats)

    @staticmethod
    def _stats(started: float, first: float | None, new_tokens: int,
               session: DecodeSession) -> GenerationStats:
        end = time.perf_counter()
        first = first or end
        rate = (new_tokens - 1) / (end - first) if new_tokens > 1 and end > first else 0.0
        layers = sum(session.layers_executed)  # Python sums: numpy costs more on short lists
        return GenerationStats(first_token_ms=(first - started) * 1e3, total_ms=(end - started) * 1e3,
                               new_tokens=new_tokens, tokens_per_s=rate,
                               decoder_passes=session.passes,
                               layers_per_pass=layers / max(1, len(session.layers_executed)),
                               layers_per_token=layers / max(1, new_tokens),
                               speculation=session.spec.to_json() if session.spec else None)

    def streams_tokens(self, **options) -> bool:
        """Whether stream() with these options yields text as it decodes. False where the
        whole output is needed first: beam search, and rerank_source (a package default
        for editing models), which chooses between the whole output and the input."""
        opts = self._options(options)
        return opts.num_beams == 1 and not self._reranks(opts)

    def stream(self, text: str | list[int], **options) -> Iterator[str]:
        """Yield text pieces as they decode (greedy or sampling, one input). Closing the
        generator stops decoding; the engine stays usable."""
        opts = self._options(options)
        if opts.num_beams > 1:
            raise InputError("stream() decodes greedily or by sampling; beam search cannot stream")
        self._check_target_length(opts)
        items, is_batch = normalise_inputs(text)
        if is_batch:
            raise InputError("stream() takes one input; call it once per input")
        rows = [self._source_ids(items[0], opts)]
        opts = self._apply_budget(opts, rows)[0]
        if self._reranks(opts):
            # the choice needs the whole output: decode it, then yield it as one piece
            yield self._generate_steps(rows, opts, time.perf_counter())[0].text
            return
        session = self._session(rows, 1, opts)
        ids: list[int] = []
        shown = ""
        for tokens in self._token_steps(rows, opts, session):
            ids.extend(int(t) for t in tokens[0])
            text_now = self.codec.decode(ids)
            # hold back pieces that may still change (an incomplete UTF-8 sequence)
            if text_now.startswith(shown) and not text_now.endswith("\ufffd"):
                piece, shown = text_now[len(shown):], text_now
                if piece:
                    yield piece
            if self.manifest.special.eos in ids:
                break

    def transcribe(self, audio: "str | Path | bytes | np.ndarray", sample_rate: int | None = None,
                   **options) -> "TranscriptionResult":  # noqa: F821 (imported below)
        """Speech to text with a Whisper package: a WAV path or bytes (at the rate the WAV
        states), or an array at `sample_rate` Hz (default 16000; dtypes and layouts:
        runtime/audio.py). Options: runtime.transcribe.TranscribeOptions."""
        from .transcribe import transcribe
        return transcribe(self, audio, sample_rate, **options)
