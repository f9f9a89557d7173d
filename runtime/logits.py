"""Rules applied to next-token scores before choosing: first the copy bias (editing
models: a bonus for the source token that copying would write next), then, in the order
transformers uses, no repeated n-grams, minimum length, forced first / last tokens,
suppressed tokens."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .source_align import SourceAligner

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
    # added to the score of the source token that copying would write next (the aligner
    # finds it from the sequence so far); 0: off. Conservative editing: on JFLEG dev the
    # default model's own edits score below leaving a sentence unchanged (GLEU)
    copy_bias: float = 0.0
    aligner: SourceAligner | None = None

    @property
    def reads_history(self) -> bool:
        """Whether choosing needs each row's sequence so far (NgramHistory)."""
        return bool(self.no_repeat_ngram) or self.biases_copies

    @property
    def biases_copies(self) -> bool:
        return bool(self.copy_bias) and self.aligner is not None

    def choose(self, logits: np.ndarray, generated: int,
               history: "NgramHistory | None" = None) -> np.ndarray:
        """Greedy tokens [B] for raw logits [B, V]. The copy bias raises one token per row,
        and the other rules only ban tokens or force one, so the biased argmax stands
        unless a rule touches it; only then are the rules applied to the whole row (the
        common step costs one argmax, a look-up and a few set lookups)."""
        top = logits.argmax(axis=-1)
        if self.biases_copies and history is not None:
            for row, seq in enumerate(history.rows):
                top[row] = self.biased_top(logits[row], int(top[row]), row, seq)
        if not self._may_change(top, generated, history):
            return top
        rows = history.rows if history is not None else None
        return self.apply(logits.astype(np.float32), generated, rows).argmax(axis=-1)

    def biased_top(self, scores: np.ndarray, top: int, row: int, sequence: list[int]) -> int:
        """The argmax of one row's float32 scores [V] (raw argmax `top`) once the copy bias
        is added, bit for bit what apply() and argmax give: the source's next token wins
        when its biased score is higher, or equal with the lower index."""
        copy = self.aligner.next_token(row, sequence)
        if copy is None or copy == top:
            return top
        biased = np.float32(scores[copy]) + np.float32(self.copy_bias)
        best = np.float32(scores[top])
        return copy if biased > best or (biased == best and copy < top) else top

    def forces_or_bans(self, token: int, generated: int) -> bool:
        """Whether a rule that does not read the sequence may change one row's choice
        `token` after `generated` new tokens: a forced token due, or `token` banned."""
        if self.forced_bos is not None and generated == 0:
            return True
        if self.forced_eos is not None and generated == self.max_new_tokens - 1:
            return True
        if generated < self.min_new_tokens and token == self.eos:
            return True
        return bool(self.suppress) and token in self.suppress

    def _may_change(self, top: np.ndarray, generated: int, history: "NgramHistory | None") -> bool:
        if self.forced_bos is not None and generated == 0:
            return True
        if self.forced_eos is not None and generated == self.max_new_tokens - 1:
            return True
        tokens = top.tolist()
        if generated < self.min_new_tokens and self.eos in tokens:
            return True
        if self.suppress and any(t in self.suppress for t in tokens):
            return True
        return bool(self.no_repeat_ngram and history is not None and
                    any(history.completes_repeat(row, t) for row, t in enumerate(tokens)))

    def apply(self, scores: np.ndarray, generated: int,
              history: list[list[int]] | None = None) -> np.ndarray:
        """scores [B, V] for the token after `generated` new tokens (modified in place).
        `history`: each row's decoder sequence so far (start token first), which the copy
        bias and the n-gram rule need; scoring without it (a drafter's guess) skips them."""
        if self.biases_copies and history is not None:
            bias = scores.dtype.type(self.copy_bias)
            for row, seq in enumerate(history):
                copy = self.aligner.next_token(row, seq)
                if copy is not None:
                    scores[row, copy] += bias
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


class NgramHistory:
    """Each row's decoder sequence (start token first), and, for the no-repeat rule, the
    n-grams in it: whether a token would complete one already seen is a set lookup."""

    def __init__(self, rows: list[list[int]], n: int, share: bool = False):
        # share=True: append to the caller's lists (its sequences), not to copies; what
        # the caller appends itself is indexed by sync()
        self.rows = rows if share else [list(r) for r in rows]
        self.n = n
        self._seen = [{tuple(r[i:i + n]) for i in range(len(r) - n + 1)} if n else set()
                      for r in self.rows]
        self._indexed = [len(r) for r in self.rows]  # tokens whose n-grams are in _seen

    def sync(self) -> None:
        """Index n-grams ending in tokens appended to the rows from outside."""
        n = self.n
        for row, seq in enumerate(self.rows):
            if not n:
                self._indexed[row] = len(seq)
                continue
            for end in range(max(self._indexed[row], n), len(seq) + 1):
                self._seen[row].add(tuple(seq[end - n:end]))
            self._indexed[row] = len(seq)

    def fork(self) -> "NgramHistory":
        """An independent copy, its n-grams indexed, to try tokens on (a verify pass):
        copying the index is far cheaper than rebuilding it from the rows."""
        self.sync()
        other = NgramHistory.__new__(NgramHistory)
        other.rows, other.n = [list(r) for r in self.rows], self.n
        other._seen, other._indexed = [seen.copy() for seen in self._seen], list(self._indexed)
        return other

    @classmethod
    def viewing(cls, sequence: list[int], n: int, seen: set) -> "NgramHistory":
        """A one-row history over `sequence` whose n-grams are `seen` (indexed by the
        caller), shared, not copied."""
        view = cls.__new__(cls)
        view.rows, view.n, view._seen, view._indexed = [sequence], n, [seen], [len(sequence)]
        return view

    def seen(self, row: int) -> set:
        """The n-grams indexed in `row` (read only)."""
        return self._seen[row]

    @classmethod
    def of(cls, start: np.ndarray, rules: ScoreRules) -> "NgramHistory | None":
        """A history when the rules read one (no_repeat_ngram, copy_bias), else None."""
        return cls([[int(t)] for t in start], rules.no_repeat_ngram) if rules.reads_history else None

    def add(self, tokens: np.ndarray) -> None:
        """Append each row's tokens ([B] or [B, k])."""
        if tokens.size == 1 and len(self.rows) == 1:  # one row, one token: every plain pass
            self.append(0, int(tokens.flat[0]))
            return
        for row, new in enumerate(np.asarray(tokens).reshape(len(self.rows), -1).tolist()):
            for t in new:
                self.append(row, t)

    def append(self, row: int, token: int) -> None:
        seq = self.rows[row]
        gram = completed_ngram(seq, self.n, token)
        seq.append(token)
        if gram is not None:
            self._seen[row].add(gram)
        self._indexed[row] = len(seq)

    def completes_repeat(self, row: int, token: int) -> bool:
        gram = completed_ngram(self.rows[row], self.n, token)
        return gram is not None and gram in self._seen[row]


def completed_ngram(seq: list[int], n: int, token: int) -> tuple[int, ...] | None:
    """The n-gram that `token` completes after `seq` (None for n = 0 or a shorter sequence)."""
    if not n or len(seq) + 1 < n:
        return None
    return tuple(seq[len(seq) - n + 1:]) + (token,)


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


def log_normaliser(logits: np.ndarray) -> np.ndarray:
    """log(sum(exp(logits))) over the last axis, [...] for logits [..., V] (left as is):
    log-probabilities of a few tokens without a whole log_softmax array."""
    top = logits.max(axis=-1, keepdims=True)
    scratch = np.subtract(logits, top, dtype=np.float32)
    return top[..., 0] + np.log(np.exp(scratch, out=scratch).sum(axis=-1))


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
