"""Rules applied to next-token scores before choosing, in the order transformers uses:
no repeated n-grams, minimum length, forced first / last tokens, suppressed tokens."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NEG = -np.inf


@dataclass(frozen=True)
class ScoreRules:
    eos: int
    min_new_tokens: int
    max_new_tokens: int
    suppress: tuple[int, ...] = ()
    forced_bos: int | None = None
    forced_eos: int | None = None
    no_repeat_ngram: int = 0

    def apply(self, scores: np.ndarray, generated: int,
              history: list[list[int]] | None = None) -> np.ndarray:
        """scores [B, V] for the token after `generated` new tokens (modified in place).
        `history`: each row's decoder sequence so far (start token first), which the
        n-gram rule needs; scoring without it (a drafter's guess) skips that rule."""
        if self.no_repeat_ngram and history is not None:
            for row, seq in enumerate(history):
                banned = repeated_ngram_tokens(seq, self.no_repeat_ngram)
                if banned:
                    scores[row, banned] = NEG
        if generated < self.min_new_tokens:
            scores[:, self.eos] = NEG
        if self.forced_bos is not None and generated == 0:
            scores[:] = NEG
            scores[:, self.forced_bos] = 0.0
        if self.forced_eos is not None and generated == self.max_new_tokens - 1:
            scores[:] = NEG
            scores[:, self.forced_eos] = 0.0
        if self.suppress:
            scores[:, list(self.suppress)] = NEG
        return scores


def repeated_ngram_tokens(seq: list[int], n: int) -> list[int]:
    """Tokens that would complete an n-gram already in `seq` (transformers'
    no_repeat_ngram_size: the last n-1 tokens, matched against every earlier n-gram)."""
    if len(seq) + 1 < n:
        return []
    tail = tuple(seq[len(seq) - n + 1:]) if n > 1 else ()
    return [seq[i + n - 1] for i in range(len(seq) - n + 1) if tuple(seq[i:i + n - 1]) == tail]


def log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def filter_top_k_top_p(logits: np.ndarray, top_k: int, top_p: float) -> np.ndarray:
    """Keep the top_k tokens and the smallest set with probability mass >= top_p."""
    out = logits.copy()
    if top_k and top_k < out.shape[-1]:
        kth = np.partition(out, -top_k, axis=-1)[:, -top_k][:, None]
        out[out < kth] = NEG
    if top_p < 1.0:
        order = np.argsort(-out, axis=-1, kind="stable")
        sorted_probs = np.take_along_axis(softmax(out), order, axis=-1)
        before = np.cumsum(sorted_probs, axis=-1) - sorted_probs  # mass ahead of each token
        drop = np.zeros_like(out, dtype=bool)
        np.put_along_axis(drop, order, before >= top_p, axis=-1)
        out[drop] = NEG
    return out
