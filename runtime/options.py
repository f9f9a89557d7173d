"""Generation options: one frozen dataclass, validated in one place, errors name the option."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields

import numpy as np

from edgeseq.errors import OptionsError

DRAFTERS = ("input", "layers", "ngram")
# draft="auto": the drafter the package recommends (its manifest's generation "draft") for
# greedy decoding with every layer, else none; resolved by the engine (resolve_auto_draft).
# An Engine call without draft= means "auto", as the CLI's --draft does: greedy speculation
# returns plain greedy's tokens, and its planner switches drafting off where it does not pay
AUTO_DRAFT = "auto"
MAX_DRAFT = 128  # draft lengths are searched per pass; more would only cost time
INPUT_MAX_DRAFT = 64  # JFLEG dev: 2.55 verify passes per sentence at 64 vs 4.6 at 8
MAX_COPY_BIAS = 1e6  # float32 scores stay finite with it added


def is_engine(draft: object) -> bool:
    """A draft model: another loaded edgeseq Engine."""
    return hasattr(draft, "manifest") and hasattr(draft, "runner")


def is_drafter(draft: object) -> bool:
    """A caller's own drafter (the Drafter protocol of runtime/drafters.py)."""
    return callable(getattr(draft, "propose", None)) and callable(getattr(draft, "update", None))


def resolve_auto_draft(options: dict, recommended: str | None) -> dict:
    """options with draft="auto" (or no draft at all) replaced: the package's `recommended`
    drafter where it cannot change the output (greedy search, every layer), else None."""
    if options.get("draft", AUTO_DRAFT) != AUTO_DRAFT:
        return options
    plain_greedy = not options.get("do_sample") and options.get("num_beams", 1) == 1 and all(
        options.get(name) is None for name in ("skip_ratio", "exit_after", "exit_threshold"))
    return {**options, "draft": recommended if plain_greedy else None}


@dataclass(frozen=True)
class GenerationOptions:
    max_new_tokens: int = 64        # generated tokens, EOS included, start token excluded
    min_new_tokens: int = 0         # EOS is suppressed before this many (forces a length)
    do_sample: bool = False         # False: greedy (num_beams == 1) or beam search
    temperature: float = 1.0
    top_k: int = 0                  # 0: no top-k filter
    top_p: float = 1.0              # nucleus mass in (0, 1]; 1.0: no filter
    seed: int | None = None         # sampling seed; None: fresh entropy
    num_beams: int = 1
    length_penalty: float = 1.0     # beam score = log-prob sum / length ** length_penalty
    early_stopping: bool = False    # beam search: stop once num_beams hypotheses finished
    truncate_input: bool = False    # too-long inputs: False raises, True keeps the first tokens
    # no n-gram of this size appears twice in the output (transformers' semantics; 0: off;
    # None: the package's default, from its checkpoint's generation config)
    no_repeat_ngram_size: int | None = None
    # also score the unchanged input and return it when the model prefers it (editing
    # models: see runtime/rerank.py); greedy and beam only. None: the package's default
    rerank_source: bool | None = None
    # editing models: added to the score of the source token that copying would write
    # next (runtime/source_align.py), so the model edits only where it is surer than this;
    # 0: off. None: the package's default
    copy_bias: float | None = None
    # None | "input" | "layers" | "ngram" | another Engine | an object with the Drafter
    # methods propose(ctx) -> Draft and update(drafted, accepted) (runtime/drafters.py);
    # "auto" (Engine calls only, and their default): the package's recommended drafter
    # (resolve_auto_draft)
    draft: object = None
    # most draft tokens verified per pass; None: INPUT_MAX_DRAFT for draft="input" (the
    # rest of the source is one natural draft), else 8. Adaptive drafting picks shorter.
    max_draft: int | None = None
    exit_layer: int | None = None   # draft="layers": fixed exit layer; None: adaptive
    # draft="layers": decoder layers (0-based) the draft passes skip instead of exiting
    # early (a SWIFT-style skip set); None: exit-layer drafting
    draft_skip: tuple[int, ...] | None = None
    draft_confidence: float = 0.0   # stop drafting below this top probability (0: never)
    adaptive_draft: bool = True     # size drafts by measured acceptance and cost; off: max_draft
    memory_budget_mb: float | None = None  # fit draft, batch, length into this (SpecMemo)
    # with draft=: decode a batch's inputs one after another, each advancing by its own
    # accepted drafts (True), or together by the batch's shortest accepted run (False);
    # None: whichever the measured figures say is faster (needs adaptive_draft; else False)
    speculate_rows: bool | None = None
    # lossy layer skipping (see runtime/early_exit.py); the lossless path is draft="layers"
    skip_ratio: float | None = None        # unified skipping: decoder layers / layers run
    exit_after: int | None = None          # run only the first N decoder layers
    exit_threshold: float | None = None    # CALM: exit when confidence >= this
    exit_measure: str = "top1"             # "top1" probability or "margin" (top1 - top2)
    exit_layers: tuple[int, ...] | None = None  # CALM exits to try (default: the manifest's)

    def __post_init__(self) -> None:
        if self.max_draft is None:
            object.__setattr__(self, "max_draft", INPUT_MAX_DRAFT if self.draft == "input" else 8)
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not f.default:  # a default is valid (and most fields keep theirs)
                _check_type(f.name, f.type, value)
        if isinstance(self.draft_skip, list):  # a key of the engine's drafting figures
            object.__setattr__(self, "draft_skip", tuple(self.draft_skip))
        self._check_ranges()
        self._check_drafting()
        self._check_skipping()
        self._check_combinations()

    def _check_ranges(self) -> None:
        if self.max_new_tokens < 1:
            raise OptionsError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.no_repeat_ngram_size is not None and self.no_repeat_ngram_size < 0:
            raise OptionsError(f"no_repeat_ngram_size must be >= 0, got {self.no_repeat_ngram_size}")
        if self.copy_bias is not None and not 0 <= self.copy_bias <= MAX_COPY_BIAS:
            raise OptionsError(f"copy_bias must be in 0..{MAX_COPY_BIAS:g} (logits span tens: "
                               f"{MAX_COPY_BIAS:g} already copies every token), got {self.copy_bias}")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise OptionsError(f"min_new_tokens must be in 0..max_new_tokens "
                               f"({self.max_new_tokens}), got {self.min_new_tokens}")
        if not self.temperature > 0:
            raise OptionsError(f"temperature must be > 0, got {self.temperature}")
        if self.top_k < 0:
            raise OptionsError(f"top_k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise OptionsError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.num_beams < 1:
            raise OptionsError(f"num_beams must be >= 1, got {self.num_beams}")
        if self.do_sample and self.num_beams > 1:
            raise OptionsError("do_sample=True with num_beams > 1 (beam sampling) is not "
                               "supported; choose sampling or beam search")
        if self.memory_budget_mb is not None and not 0 < self.memory_budget_mb < float("inf"):
            raise OptionsError(f"memory_budget_mb must be a finite number > 0, "
                               f"got {self.memory_budget_mb}")
        if self.seed is not None and self.seed < 0:
            raise OptionsError(f"seed must be >= 0, got {self.seed}")

    def _check_drafting(self) -> None:
        if isinstance(self.draft, str) and self.draft not in DRAFTERS:
            raise OptionsError(f"draft must be one of {DRAFTERS + (AUTO_DRAFT,)}, an Engine, "
                               f"a drafter or None; got {self.draft!r}")
        if self.draft is not None and self.num_beams > 1:
            raise OptionsError("draft= works with greedy decoding and sampling, not with "
                               "beam search (num_beams > 1)")
        if self.speculate_rows is not None and self.draft is None:
            raise OptionsError("speculate_rows applies with draft= (speculative decoding) only")
        if not 1 <= self.max_draft <= MAX_DRAFT:
            raise OptionsError(f"max_draft must be in 1..{MAX_DRAFT}, got {self.max_draft}")
        if self.exit_layer is not None and self.exit_layer < 1:
            raise OptionsError(f"exit_layer must be >= 1, got {self.exit_layer}")
        if self.draft is not None and not isinstance(self.draft, str) and \
                not is_engine(self.draft) and not is_drafter(self.draft):
            raise OptionsError(f"draft must be one of {DRAFTERS}, an Engine, a drafter (an "
                               f"object with propose(ctx) and update(drafted, accepted)) or "
                               f"None; got {type(self.draft).__name__}")
        if not 0 <= self.draft_confidence < 1:
            raise OptionsError(f"draft_confidence must be in [0, 1), got {self.draft_confidence}")
        if self.exit_layer is not None and self.draft != "layers":
            raise OptionsError("exit_layer only applies with draft='layers'")
        if self.draft_skip is not None:
            if self.draft != "layers":
                raise OptionsError("draft_skip only applies with draft='layers'")
            if self.exit_layer is not None:
                raise OptionsError("choose exit_layer or draft_skip, not both")
            if not self.draft_skip or len(set(self.draft_skip)) != len(self.draft_skip) or \
                    min(self.draft_skip) < 0:
                raise OptionsError(f"draft_skip must list distinct layer indices >= 0, got "
                                   f"{self.draft_skip!r}")

    def _check_skipping(self) -> None:
        modes = [n for n, v in (("skip_ratio", self.skip_ratio), ("exit_after", self.exit_after),
                                ("exit_threshold", self.exit_threshold)) if v is not None]
        if len(modes) > 1:
            raise OptionsError(f"choose one layer-skipping mode, not {' and '.join(modes)}")
        if modes and self.draft is not None:
            raise OptionsError(f"{modes[0]} (lossy skipping) cannot combine with draft=; "
                               "draft='layers' is the lossless way to use fewer layers")
        if self.skip_ratio is not None and not self.skip_ratio >= 1:
            raise OptionsError(f"skip_ratio must be >= 1, got {self.skip_ratio}")
        if self.exit_after is not None and self.exit_after < 1:
            raise OptionsError(f"exit_after must be >= 1, got {self.exit_after}")
        if self.exit_threshold is not None and not 0 < self.exit_threshold <= 1:
            raise OptionsError(f"exit_threshold must be in (0, 1], got {self.exit_threshold}")
        if self.exit_threshold is not None and self.num_beams > 1:
            raise OptionsError("exit_threshold (per-token exit) does not work with beam search")
        if self.exit_measure not in ("top1", "margin"):
            raise OptionsError(f"exit_measure must be 'top1' or 'margin', got {self.exit_measure!r}")

    def _check_combinations(self) -> None:
        if self.rerank_source and self.do_sample:
            raise OptionsError("rerank_source applies to greedy and beam search, not to sampling "
                               "(it would change the sampled distribution)")
        sampling_only = {"temperature": self.temperature != 1.0, "top_k": self.top_k != 0,
                         "top_p": self.top_p != 1.0, "seed": self.seed is not None}
        if not self.do_sample and any(sampling_only.values()):
            used = [k for k, v in sampling_only.items() if v]
            raise OptionsError(f"{', '.join(used)} only apply when sampling (do_sample=True; CLI --sample)")


def _check_type(name: str, annotation: object, value: object) -> None:
    """Refuse a value of the wrong type for a field annotated bool, int, float or
    `X | None` (a bool is not an int here; floats must be finite)."""
    kind = annotation if isinstance(annotation, str) else str(annotation)
    optional = kind.endswith(" | None")
    kind = kind.removesuffix(" | None")
    if value is None and optional:
        return
    if kind == "bool" and not isinstance(value, (bool, np.bool_)):
        raise OptionsError(f"{name} must be True or False, got {value!r}")
    is_bool = isinstance(value, (bool, np.bool_))
    if kind == "int" and (is_bool or not isinstance(value, numbers.Integral)):
        raise OptionsError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if kind.startswith("tuple[int") and not (
            isinstance(value, (tuple, list)) and all(
                isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))
                for v in value)):
        raise OptionsError(f"{name} must be a tuple of ints, got {value!r}")
    if kind == "float":
        if is_bool or not isinstance(value, numbers.Real):
            raise OptionsError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
        try:
            finite = math.isfinite(value)
        except OverflowError:  # an int too large for a float
            finite = False
        if not finite:
            raise OptionsError(f"{name} must be a finite number, got {value!r}")
