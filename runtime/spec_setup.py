"""Build the drafter a generate call asks for, with the scoring it shares with the
verifier (rules, temperature, top-k / top-p), so draft probabilities are comparable."""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

from edgeseq import names
from edgeseq.errors import OptionsError
from edgeseq.manifest import Manifest
from .draft_control import DraftController
from .drafters import CheckedDrafter, InputDrafter, ModelDrafter, SelfDrafter
from .logits import ScoreRules, filter_top_k_top_p, softmax
from .options import GenerationOptions, is_engine
from .providers import SHARED_POOL

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


def _warn_separate_pools(engine: "Engine", other: "Engine") -> None:
    """Each engine's spinning intra-op threads take the cores the other one needs next
    (bench/draft_pools.py, 2 cores: 0.58x plain speed with separate spinning pools, 0.83x
    with the drafter's pool sleeping, 0.90x with one shared pool). The warnings module
    says it once per call site."""
    pools = (engine.config, other.config)
    if SHARED_POOL.threads is not None or not any(c.spin and c.threads != 1 for c in pools):
        return  # one process-wide pool (every session joins it once it exists), or no spinning
    warnings.warn("a draft engine with its own spinning thread pool competes with the target's "
                  "for the cores; load both with shared_pool=True (or spin=False)",
                  RuntimeWarning, stacklevel=5)


def _draft_rng(opts: GenerationOptions) -> np.random.Generator | None:
    """The drafter's random stream; greedy drafting draws nothing (and a fresh generator
    costs more than a short greedy call's whole drafting bookkeeping)."""
    return np.random.default_rng(None if opts.seed is None else opts.seed + 1) if opts.do_sample else None


def check_draft_model(mine: Manifest, theirs: Manifest) -> None:
    """OptionsError unless package `theirs` can draft for package `mine`."""
    if theirs.arch.vocab_size != mine.arch.vocab_size or theirs.special != mine.special:
        raise OptionsError("the draft model must share the target's vocabulary and special "
                           "tokens (same tokenizer)")
    tokenizers = [m.files.get(names.TOKENIZER_FILE, {}).get("sha256") for m in (mine, theirs)]
    if all(tokenizers) and tokenizers[0] != tokenizers[1]:  # maybe the same ids, maybe not
        warnings.warn("the draft model's tokenizer.json differs from the target's: where their "
                      "vocabularies differ its drafts are rejected (the output stays the "
                      "target's own)", RuntimeWarning, stacklevel=2)


def make_drafter(engine: "Engine", opts: GenerationOptions, session: "DecodeSession",
                 rows: list[list[int]], rules: ScoreRules, control: DraftController):
    """(drafter, sampler or None for greedy verification)."""
    score = make_scorer(rules, opts)
    sampler = score if opts.do_sample else None
    rng = _draft_rng(opts)
    if opts.draft == "input":
        # scoring the source for rerank_source needs a first draft of the literal source
        return InputDrafter(max_draft=opts.max_draft, shapes=engine.codec.shapes,
                            capitalise=session.scores is None), sampler
    if opts.draft == "ngram":
        return engine.ngram, sampler  # shared by calls: it only ever sees ctx.limit
    if opts.draft == "layers":
        return self_drafter(engine, session, rules, opts, control), sampler
    other = opts.draft
    if not is_engine(other):  # the caller's own drafter (options checked its methods)
        return CheckedDrafter(other, engine.arch.vocab_size), sampler
    check_draft_model(engine.manifest, other.manifest)
    _warn_separate_pools(engine, other)
    def open_draft_session():
        drafting = other._session(rows, 1, GenerationOptions(max_new_tokens=opts.max_new_tokens))
        drafting.even_rows = False  # proposals: how a lone row rounds cannot change the output
        return drafting
    return ModelDrafter(open_draft_session, score, opts.do_sample, rng, opts.max_draft,
                        eos=engine.manifest.special.eos, choose=rules.choose), sampler


def self_drafter(engine: "Engine", session: "DecodeSession", rules, opts: GenerationOptions,
                 control: DraftController) -> SelfDrafter:
    """Layer drafting from the package's draft exits (heads of their own) when it has
    them, else from exits through the model's head."""
    exits = engine.manifest.exits
    layers = engine.arch.decoder_layers
    candidates = [e for e in exits.get("layers", []) if e < layers] \
        if exits.get("shared_head") is False else None
    return SelfDrafter(session, layers, make_scorer(rules, opts), opts.do_sample, _draft_rng(opts),
                       control, exit_layer=opts.exit_layer, confidence=opts.draft_confidence,
                       exits=candidates, prior_cost=exit_step_costs(engine.manifest),
                       choose=rules.choose, skip=opts.draft_skip, eos=rules.eos)


def exit_step_costs(manifest) -> dict[int, float]:
    """A draft step at exit k in units of a full pass, from weight counts: k layers and
    the exit's head rows (a draft head may cover part of the vocabulary) against all
    layers and the full head. Only a prior: the drafter switches to measured times."""
    a = manifest.arch
    layer = 4 * a.d_model * a.inner_dim + 2 * a.d_model * a.inner_dim + \
        (3 if a.gated_ffn else 2) * a.d_model * a.d_ff
    rows = {int(k): n for k, n in manifest.exits.get("draft_vocab", {}).items()}
    full = a.decoder_layers * layer + a.vocab_size * a.d_model
    return {k: (k * layer + rows.get(k, a.vocab_size) * a.d_model) / full
            for k in range(1, a.decoder_layers)}
