"""Build the drafter a generate call asks for, with the scoring it shares with the
verifier (rules, temperature, top-k / top-p), so draft probabilities are comparable."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edgeseq.errors import OptionsError
from .drafters import InputDrafter, ModelDrafter, SelfDrafter
from .logits import ScoreRules, filter_top_k_top_p, softmax
from .options import GenerationOptions

if TYPE_CHECKING:
    from .engine import Engine
    from .search import DecodeSession


def make_scorer(rules: ScoreRules, opts: GenerationOptions):
    """raw logits [B, V], generated count -> next-token probabilities [B, V]."""
    def score(raw: np.ndarray, generated: int, history: list[list[int]] | None = None) -> np.ndarray:
        scores = rules.apply(raw.astype(np.float64), generated, history)
        if opts.do_sample:
            scores = filter_top_k_top_p(scores / opts.temperature, opts.top_k, opts.top_p)
        return softmax(scores)
    return score


def make_drafter(engine: "Engine", opts: GenerationOptions, session: "DecodeSession",
                 rows: list[list[int]], rules: ScoreRules):
    """(drafter, sampler or None for greedy verification)."""
    score = make_scorer(rules, opts)
    sampler = score if opts.do_sample else None
    rng = np.random.default_rng(None if opts.seed is None else opts.seed + 1)
    if opts.draft == "input":
        return InputDrafter(max_draft=opts.max_draft), sampler
    if opts.draft == "ngram":
        return engine.ngram, sampler  # shared by calls: it only ever sees ctx.limit
    if opts.draft == "layers":
        arch = engine.arch
        head = arch.vocab_size * arch.d_model / max(1, 4 * arch.d_model * arch.inner_dim
                                                    + 3 * arch.d_model * arch.d_ff)
        return SelfDrafter(session, arch.decoder_layers, score, opts.do_sample, rng,
                           max_draft=opts.max_draft, exit_layer=opts.exit_layer,
                           confidence=opts.draft_confidence, head_cost_layers=head), sampler
    other = opts.draft
    if not hasattr(other, "manifest") or not hasattr(other, "runner"):
        raise OptionsError("draft must be 'input', 'layers', 'ngram' or an edgeseq Engine")
    mine, theirs = engine.manifest, other.manifest
    if theirs.arch.vocab_size != mine.arch.vocab_size or theirs.special != mine.special:
        raise OptionsError("the draft model must share the target's vocabulary and special "
                           "tokens (same tokenizer)")
    draft_session = other._session(rows, 1, GenerationOptions(max_new_tokens=opts.max_new_tokens))
    return ModelDrafter(draft_session, score, opts.do_sample, rng, opts.max_draft), sampler
