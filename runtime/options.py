"""Generation options: one frozen dataclass, validated in one place, errors name the option."""
from __future__ import annotations

from dataclasses import dataclass

from edgeseq.errors import OptionsError

DRAFTERS = ("input", "layers", "ngram")


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
    draft: object = None            # None | "input" | "layers" | "ngram" | another Engine
    max_draft: int = 8              # most draft tokens verified per pass
    exit_layer: int | None = None   # draft="layers": fixed exit layer; None: adaptive
    draft_confidence: float = 0.0   # stop drafting below this top probability (0: never)
    adaptive_draft: bool = True     # size drafts by measured acceptance and cost; off: max_draft
    memory_budget_mb: float | None = None  # fit draft, batch, length into this (SpecMemo)
    # lossy layer skipping (see runtime/early_exit.py); the lossless path is draft="layers"
    skip_ratio: float | None = None        # unified skipping: decoder layers / layers run
    exit_after: int | None = None          # run only the first N decoder layers
    exit_threshold: float | None = None    # CALM: exit when confidence >= this
    exit_measure: str = "top1"             # "top1" probability or "margin" (top1 - top2)
    exit_layers: tuple[int, ...] | None = None  # CALM exits to try (default: the manifest's)

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise OptionsError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
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
        if isinstance(self.draft, str) and self.draft not in DRAFTERS:
            raise OptionsError(f"draft must be one of {DRAFTERS}, an Engine, or None; "
                               f"got {self.draft!r}")
        if self.draft is not None and self.num_beams > 1:
            raise OptionsError("draft= works with greedy decoding and sampling, not with "
                               "beam search (num_beams > 1)")
        if self.memory_budget_mb is not None and not self.memory_budget_mb > 0:
            raise OptionsError(f"memory_budget_mb must be > 0, got {self.memory_budget_mb}")
        if self.max_draft < 1:
            raise OptionsError(f"max_draft must be >= 1, got {self.max_draft}")
        if not 0 <= self.draft_confidence < 1:
            raise OptionsError(f"draft_confidence must be in [0, 1), got {self.draft_confidence}")
        if self.exit_layer is not None and self.draft != "layers":
            raise OptionsError("exit_layer only applies with draft='layers'")
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
        sampling_only = {"temperature": self.temperature != 1.0, "top_k": self.top_k != 0,
                         "top_p": self.top_p != 1.0, "seed": self.seed is not None}
        if not self.do_sample and any(sampling_only.values()):
            used = [k for k, v in sampling_only.items() if v]
            raise OptionsError(f"{', '.join(used)} only apply when do_sample=True")
