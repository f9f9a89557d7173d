"""Keep the input when the model likes it better than its own output.

An editing model (grammar fixing, paraphrase) decodes greedily, and greedy search can
return an edit that the model itself scores below leaving the sentence alone: the
unchanged input is never among the candidates a left-to-right search considers. Here it
is: both the decoded output and the input are scored by teacher forcing (one decoder pass
together, on the generation's encoder output), and the input wins when its
mean log-probability per token is at least the output's. Mean, not sum, so a shorter or
longer edit is not favoured for its length alone.
"""
from __future__ import annotations

import numpy as np

from .search import DecodeSession


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
    logits = np.asarray(session.step(tokens[:, :width]), np.float32)  # ours: edited in place
    # log_softmax at the target tokens only: x - max - log(sum(exp(x - max)))
    np.subtract(logits, logits.max(axis=-1, keepdims=True), out=logits)
    picked = np.take_along_axis(logits, tokens[:, 1:, None], axis=-1)[..., 0]
    picked -= np.log(np.exp(logits, out=logits).sum(axis=-1))
    lengths = np.array([len(t) for t in targets])
    mask = np.arange(width)[None, :] < lengths[:, None]
    return np.where(mask, picked, 0.0).sum(axis=1) / lengths


def prefer_source(session: DecodeSession, start: int, pad: int,
                  sources: list[list[int]], outputs: list[list[int]], copies: int = 1) -> list[bool]:
    """For each input, whether its source should replace its decoded output; the
    session holds `copies` rows per input (beams). A source longer than the output may
    be (the cache's capacity) or equal to the output is not a candidate. Sources and
    outputs are scored together in one pass, on the session's encoder output and a
    cache of their own."""
    rows = [i for i, (s, o) in enumerate(zip(sources, outputs))
            if 0 < len(s) < session.cache.capacity and s != o]
    keep = [False] * len(sources)
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
