"""Keep the input when the model likes it better than its own output.

An editing model (grammar fixing, paraphrase) decodes greedily, and greedy search can
return an edit that the model itself scores below leaving the sentence alone: the
unchanged input is never among the candidates a left-to-right search considers. Here it
is: both the decoded output and the input are scored by teacher forcing (one decoder pass
together, on the generation's encoder output), and the input wins when its
mean log-probability per token is at least the output's. Mean, not sum, so a shorter or
longer edit is not favoured for its length alone.

Greedy speculative decoding computes both scores on the way (`PassScores`): every emitted
token's logits come from a verify pass, and input drafting's first pass drafts the whole
source, i.e. teacher-forces it. Rows scored that way skip the scoring pass.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .logits import log_normaliser
from .memory import held_logit_positions
from .search import DecodeSession


def log_probs_at(logits: np.ndarray, tokens: np.ndarray,
                 normaliser: np.ndarray | None = None) -> np.ndarray:
    """log_softmax(logits)[..., token] for logits [..., V] and tokens [...], taken at the
    tokens only; `normaliser`: log_normaliser(logits), when already known."""
    if normaliser is None:
        normaliser = log_normaliser(logits)
    return np.take_along_axis(logits, tokens[..., None], axis=-1)[..., 0] - normaliser


@dataclass
class PassScores:
    """Log-probabilities of a generation's own tokens, from the passes that chose them,
    and of each row's source when one pass verified it whole (None: not seen).

    The passes' logits are held unscored while they fit in `held_bytes` and scored only
    when a score is asked for: an output equal to its source needs none (prefer_source
    skips it), and on JFLEG dev most outputs are, so most calls never pay for the
    log-normalisers (exp over the vocabulary at every position)."""
    rows: int
    source_drafted: bool = False   # the first pass drafts each row's source (input drafting)
    held_bytes: int = 0            # logits kept unscored up to this size (held_logit_bytes)
    output_sum: np.ndarray = field(init=False)
    output_count: np.ndarray = field(init=False)
    source: list[float | None] = field(init=False)
    _held: list = field(init=False)  # (logits, emitted, live, scored rows, sources) per pass

    def __post_init__(self) -> None:
        self.output_sum = np.zeros(self.rows)
        self.output_count = np.zeros(self.rows, int)
        self.source = [None] * self.rows
        self._held = []

    def wants_sources(self, generated: int) -> bool:
        """Whether the pass after `generated` tokens is the one that drafts the sources."""
        return self.source_drafted and generated == 0

    def add_pass(self, logits: np.ndarray, emitted: np.ndarray, live: np.ndarray,
                 drafts: np.ndarray | None = None, sources: list[list[int]] | None = None) -> None:
        """logits [B, n, V] of a pass, the tokens it emitted [B, m], which of them count (a
        finished row's pads do not); with `drafts` and `sources`, the first pass: the
        rows whose drafts were their whole source get that source's score too. The
        arrays must not change afterwards (they may be scored later)."""
        scored = [r for r, src in enumerate(sources or ())
                  if drafts.shape[1] >= len(src) and drafts[r, :len(src)].tolist() == src]
        self._held.append((logits, emitted, live, scored, sources))
        if sum(held[0].nbytes for held in self._held) > self.held_bytes:
            self._score_held()

    def _score_held(self) -> None:
        """Score the held passes. One normaliser per position serves the output's and the
        source's scores."""
        for logits, emitted, live, scored, sources in self._held:
            width = max([emitted.shape[1]] + [len(sources[r]) for r in scored])
            normaliser = log_normaliser(logits[:, :width])
            picked = log_probs_at(logits[:, :emitted.shape[1]], emitted,
                                  normaliser[:, :emitted.shape[1]])
            self.output_sum += np.where(live, picked, 0.0).sum(axis=1)
            self.output_count += live.sum(axis=1)
            for r in scored:
                n = len(sources[r])
                self.source[r] = float(log_probs_at(logits[r, :n], np.array(sources[r]),
                                                    normaliser[r, :n]).mean())
        self._held = []

    def known(self, row: int) -> tuple[float, float] | None:
        """(source, output) mean log-probabilities of `row`, when both were seen."""
        self._score_held()
        if self.source[row] is None or not self.output_count[row]:
            return None
        return self.source[row], float(self.output_sum[row] / self.output_count[row])


def held_logit_bytes(rows: list[list[int]], vocab_size: int, max_draft: int) -> int:
    """What PassScores may hold unscored: the logits of the scoring pass that a
    generation's own scores replace and of one verify pass, as the memory model counts
    them (runtime/memory.py)."""
    positions = held_logit_positions(max(map(len, rows)), max_draft)
    return len(rows) * positions * vocab_size * np.dtype(np.float32).itemsize


def mean_log_probs(session: DecodeSession, start: int, targets: list[list[int]],
                   pad: int) -> np.ndarray:
    """Mean log-probability per token of each row's target under the model, in one
    teacher-forced decoder pass from an empty cache (session rows = targets)."""
    width = max(len(t) for t in targets)
    tokens = np.full((len(targets), width + 1), pad, np.int64)
    tokens[:, 0] = start
    for row, target in enumerate(targets):
        tokens[row, 1:1 + len(target)] = target
    session.cache.truncate(0)
    # causal attention: padding after a row's target does not change its logits
    picked = log_probs_at(session.step(tokens[:, :width]), tokens[:, 1:])
    lengths = np.array([len(t) for t in targets])
    mask = np.arange(width)[None, :] < lengths[:, None]
    return np.where(mask, picked, 0.0).sum(axis=1) / lengths


def prefer_source(session: DecodeSession, start: int, pad: int,
                  sources: list[list[int]], outputs: list[list[int]], copies: int = 1,
                  seen: PassScores | None = None) -> list[bool]:
    """For each input, whether its source should replace its decoded output; the
    session holds `copies` rows per input (beams). A source longer than the output may
    be (the cache's capacity) or equal to the output is not a candidate. Rows whose
    scores the generation `seen` are decided from them; the others' sources and outputs
    are scored together in one pass, on the session's encoder output and a cache of
    their own."""
    rows = [i for i, (s, o) in enumerate(zip(sources, outputs))
            if 0 < len(s) < session.cache.capacity and s != o]
    keep = [False] * len(sources)
    if seen is not None:
        known = {i: seen.known(i) for i in rows}
        for i, scores in known.items():
            if scores is not None:
                keep[i] = scores[0] >= scores[1]  # source at least as likely as the output
        rows = [i for i in rows if known[i] is None]
    if not rows:
        return keep
    targets = [sources[i] for i in rows] + [outputs[i] for i in rows]
    picked = np.array(rows + rows) * copies
    scorer = DecodeSession(session.runner, session.encoder.select(picked),
                           session.runner.new_cache(len(picked), max(map(len, targets))),
                           plan=session.plan)
    scores = mean_log_probs(scorer, start, targets, pad)
    session.passes += scorer.passes  # a cost of the call; layer statistics stay generation's
    for i, source_score, output_score in zip(rows, scores[:len(rows)], scores[len(rows):]):
        keep[i] = bool(source_score >= output_score)
    return keep
