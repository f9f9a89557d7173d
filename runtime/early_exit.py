"""Lossy layer skipping (the lossless path is draft="layers"):

- unified layer skipping: one balanced set of intermediate decoder layers is skipped for
  every token, so batching and the KV cache work unchanged;
- static exit: run only the first N layers (with an exit-trained model, its exit N);
- confidence early exit (CALM): per token, stop at the first exit whose top probability
  (or top-1 minus top-2 margin) clears a threshold. The layers the token skipped get K/V
  projected from the exit hidden state in the same pass (state propagation), so later
  tokens never attend to stale entries; a token that is not confident continues from
  the exit's hidden state (no layer runs twice)."""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from .decoder import LayerPlan
from .logits import NgramHistory, ScoreRules, softmax
from .search import DecodeSession, all_done, finish_rows


def unified_skip_plan(layers: int, target_ratio: float) -> LayerPlan:
    """Keep round(layers / ratio) layers: always the first and last, the rest spread
    evenly, so the skipped layers are balanced across the stack."""
    if target_ratio < 1.0:
        raise ValueError(f"skip ratio must be >= 1, got {target_ratio}")
    keep = max(1, min(layers, round(layers / target_ratio)))
    if keep == 1:
        return LayerPlan.keep({0}, layers)
    kept = {round(i * (layers - 1) / (keep - 1)) for i in range(keep)}
    return LayerPlan.keep(kept, layers)


def confidence(probs: np.ndarray, measure: str) -> np.ndarray:
    """Per row: top-1 probability, or top-1 minus top-2 ("margin")."""
    if measure == "margin":
        top2 = np.partition(probs, -2, axis=-1)[:, -2:]
        return top2[:, 1] - top2[:, 0]
    return probs.max(axis=-1)


def confident_exit(s: DecodeSession, start: np.ndarray, rules: ScoreRules, pad: int,
                   exits: list[int], threshold: float, measure: str,
                   choose: Callable[[np.ndarray], np.ndarray]) -> Iterator[np.ndarray]:
    """CALM-style decoding; rows in a batch exit together when all are confident."""
    layers = s.runner.arch.decoder_layers
    exits = sorted(set(e for e in exits if 1 <= e <= layers) | {layers})
    done = np.zeros(len(start), bool)
    last = start[:, None]
    history = NgramHistory.of(start, rules)
    for generated in range(rules.max_new_tokens):
        base, hidden, begin = s.cache.length, None, 0
        for exit_layer in exits:
            s.cache.truncate(base)
            plan = LayerPlan.span(begin, exit_layer, layers, fill_after=True)
            s.passes += 1
            s.layers_executed.append(plan.executed)
            logits, hidden = s.runner.step_hidden(last, s.encoder, s.cache, plan, hidden)
            scores = rules.apply(logits[:, -1].astype(np.float64), generated,
                                 history.rows if history is not None else None)
            probs = softmax(scores)
            if exit_layer == layers or (confidence(probs, measure)[~done] >= threshold).all():
                break
            begin = exit_layer
        last = finish_rows(choose(scores), done, rules.eos, pad)[:, None]
        if history is not None:
            history.add(last)
        yield last
        if all_done(done):
            return
