"""Decoding strategies over one decoder session. Each is a generator that yields, per
decoder pass, the tokens appended to every row ([B, k] int64, k >= 1), so callers can
stream and count passes; speculative strategies plug in with the same shape."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from .decoder import EncoderState, LayerPlan, Seq2SeqRunner
from .kv_cache import KVCache
from .logits import NgramHistory, ScoreRules, filter_top_k_top_p, log_softmax, softmax
from .options import GenerationOptions


@dataclass
class DecodeSession:
    """One generation's decoder state: encoder output, KV cache, and the pass counter."""
    runner: Seq2SeqRunner
    encoder: EncoderState
    cache: KVCache
    plan: LayerPlan | None = None
    passes: int = 0
    layers_executed: list[int] = field(default_factory=list)
    spec: Any = None  # SpecStats when decoding speculatively
    scores: Any = None  # rerank.PassScores: greedy speculation's own token scores, for rerank_source
    # passes of an even number of rows (runtime/nbits_rows.py); None: as the runner's
    # sessions say. A draft model's session runs them as they come: its tokens are
    # proposals the target checks, so an extra row would buy it nothing
    even_rows: bool | None = None

    def step(self, tokens: np.ndarray, plan: LayerPlan | None = None) -> np.ndarray:
        plan = plan or self.plan
        self.passes += 1
        self.layers_executed.append((plan or self.runner.full_plan).executed)
        return self.runner.step(tokens, self.encoder, self.cache, plan, self.even_rows)


def finish_rows(tokens: np.ndarray, done: np.ndarray, eos: int, pad: int) -> np.ndarray:
    """Rows already finished emit pad; rows that emit EOS become finished."""
    if len(tokens) == 1:  # one row, most calls: Python scalars, not three array operations
        if done[0]:
            return np.full_like(tokens, pad)
        done[0] = int(tokens[0]) == eos
        return tokens
    tokens = np.where(done, pad, tokens)
    done |= tokens == eos
    return tokens


def all_done(done: np.ndarray) -> bool:
    """Whether every row has finished; one row's flag read directly (numpy's reduction
    costs more than the rest of a plain pass's bookkeeping for one row)."""
    return bool(done[0]) if len(done) == 1 else bool(done.all())


def greedy(s: DecodeSession, start: np.ndarray, rules: ScoreRules, pad: int) -> Iterator[np.ndarray]:
    done = np.zeros(len(start), bool)
    last = start[:, None]
    history = NgramHistory.of(start, rules)
    for generated in range(rules.max_new_tokens):
        last = finish_rows(rules.choose(s.step(last)[:, -1], generated, history),
                           done, rules.eos, pad)[:, None]
        if history is not None:
            history.add(last)
        yield last
        if all_done(done):
            return


def token_chooser(opts: GenerationOptions) -> Callable[[np.ndarray], np.ndarray]:
    """scores [B, V] -> tokens [B]: argmax, or a sample after temperature, top-k, top-p."""
    if not opts.do_sample:
        return lambda scores: scores.argmax(axis=-1)
    rng = np.random.default_rng(opts.seed)

    def sample_rows(scores: np.ndarray) -> np.ndarray:
        probs = softmax(filter_top_k_top_p(scores / opts.temperature, opts.top_k, opts.top_p))
        return np.array([rng.choice(len(p), p=p) for p in probs])
    return sample_rows


def sample(s: DecodeSession, start: np.ndarray, rules: ScoreRules, pad: int,
           opts: GenerationOptions) -> Iterator[np.ndarray]:
    choose = token_chooser(opts)
    done = np.zeros(len(start), bool)
    last = start[:, None]
    history = NgramHistory.of(start, rules)
    for generated in range(rules.max_new_tokens):
        scores = rules.apply(s.step(last)[:, -1].astype(np.float64), generated,
                             history.rows if history is not None else None)
        last = finish_rows(choose(scores), done, rules.eos, pad)[:, None]
        if history is not None:
            history.add(last)
        yield last
        if all_done(done):
            return


@dataclass
class BeamResult:
    sequences: list[list[int]]  # best hypothesis per input, generated tokens only
    scores: list[float]


def beam_search(s: DecodeSession, batch: int, start: int, rules: ScoreRules, pad: int,
                opts: GenerationOptions) -> BeamResult:
    """transformers' vectorised beam search (v5), ported to numpy so fp32 results match
    token for token. The encoder state and cache hold batch * num_beams rows."""
    beams, length_penalty, eos = opts.num_beams, opts.length_penalty, rules.eos
    keep = 2 * beams
    steps = rules.max_new_tokens
    running = np.full((batch, beams, steps), pad, np.int64)
    running_scores = np.zeros((batch, beams), np.float32)
    running_scores[:, 1:] = -1e9
    finished = np.full((batch, beams, steps), pad, np.int64)
    finished_scores = np.full((batch, beams), -1e9, np.float32)
    finished_len = np.zeros((batch, beams), np.int64)
    is_finished = np.zeros((batch, beams), bool)
    can_improve = np.ones(batch, bool)
    last = np.full((batch * beams, 1), start, np.int64)
    rows = np.arange(batch)[:, None]
    for cur in range(steps):
        logp = log_softmax(s.step(last)[:, -1].astype(np.float32))
        history = ([[start, *running[b, k, :cur].tolist()] for b in range(batch) for k in range(beams)]
                   if rules.reads_history else None)
        logp = rules.apply(logp, cur, history).reshape(batch, beams, -1) + running_scores[:, :, None]
        flat = logp.reshape(batch, -1)
        top = _top_k(flat, keep)
        top_scores = np.take_along_axis(flat, top, axis=-1)
        vocab = logp.shape[-1]
        source_beam, token = top // vocab, top % vocab
        cand = running[rows, source_beam].copy()
        cand[:, :, cur] = token
        hits = (token == eos) | (cur + 1 >= steps)
        # running beams for the next step: the best `beams` candidates that did not stop
        alive = top_scores + hits * np.float32(-1e9)
        pick = np.argsort(-alive, axis=-1, kind="stable")[:, :beams]
        running = cand[rows, pick]
        running_scores = np.take_along_axis(alive, pick, axis=-1)
        # finished hypotheses: merge new ones (only among the top `beams`) by normalised score
        norm = top_scores / np.float32((cur + 1) ** length_penalty)
        full = is_finished.all(axis=1) & opts.early_stopping
        norm = norm + np.float32(-1e9) * (full | ~can_improve)[:, None]
        just = hits & (np.arange(keep) < beams)[None, :]
        norm = norm + np.float32(-1e9) * ~just
        merged = np.concatenate([finished_scores, norm], axis=1)
        order = np.argsort(-merged, axis=-1, kind="stable")[:, :beams]
        finished = np.concatenate([finished, cand], axis=1)[rows, order]
        finished_len = np.concatenate([finished_len, np.full((batch, keep), cur + 1)], axis=1)[rows, order]
        is_finished = np.concatenate([is_finished, just], axis=1)[rows, order]
        finished_scores = np.take_along_axis(merged, order, axis=-1)
        parent = np.take_along_axis(source_beam, pick, axis=-1) + rows * beams
        s.cache.reorder(parent.reshape(-1))
        last = running[:, :, cur].reshape(-1, 1)
        best_running = running_scores[:, 0] / np.float32((cur + 1) ** length_penalty)
        # an empty finished slot counts as -1e9, so search goes on until all are filled
        worst_done = np.where(is_finished, finished_scores.min(axis=1, keepdims=True), -1e9)
        can_improve &= (best_running[:, None] > worst_done).any(axis=1)
        if not can_improve.any() or (opts.early_stopping and is_finished.all()) or hits.all():
            break
    return BeamResult([finished[b, 0, :finished_len[b, 0]].tolist() for b in range(batch)],
                      finished_scores[:, 0].tolist())


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best per row, best first (argpartition, then sort only those)."""
    part = np.argpartition(-scores, k - 1, axis=-1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=-1), axis=-1, kind="stable")
    return np.take_along_axis(part, order, axis=-1)
