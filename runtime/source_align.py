"""Where an editing model's output stands in its source: the source token that copying
would write next. A pure function of the source and the output so far (no state kept
between calls), so plain decoding and a verify pass that checks several positions at
once find the same token at every position: the copy bias (ScoreRules.copy_bias) built
on it leaves speculative greedy decoding token-identical to plain greedy decoding."""
from __future__ import annotations

from typing import Sequence

MAX_NGRAM = 3


class SourceAligner:
    """Per source row: every n-gram (n <= 3) of the source and the positions just after
    its occurrences, indexed once per call so each look-up is a dictionary read."""

    def __init__(self, sources: Sequence[Sequence[int]], copies: int = 1):
        self.sources = [list(s) for s in sources]
        self.copies = copies  # decoder rows per source (beams), source-major
        self._after: list[dict[tuple[int, ...], list[int]]] = []
        for src in self.sources:
            after: dict[tuple[int, ...], list[int]] = {}
            for n in range(1, MAX_NGRAM + 1):
                for end in range(n, len(src)):  # an occurrence must have a token after it
                    after.setdefault(tuple(src[end - n:end]), []).append(end)
            self._after.append(after)

    def next_token(self, row: int, sequence: Sequence[int]) -> int | None:
        """The source token after the output's longest final n-gram (n <= 3) found in the
        source, at the occurrence nearest the output's own length (the earlier one on a
        tie); the source's first token for an empty output; None when even the last
        output token is not in the source. `sequence`: the decoder sequence, start token
        first; row: the decoder row (copies per source, source-major)."""
        index = row // self.copies
        src, after = self.sources[index], self._after[index]
        produced = len(sequence) - 1
        if produced <= 0:
            return src[0] if src else None
        for n in range(min(MAX_NGRAM, produced), 0, -1):
            ends = after.get(tuple(sequence[len(sequence) - n:]))
            if ends:
                if len(ends) == 1:
                    return src[ends[0]]
                return src[min(ends, key=lambda end: abs(end - produced))]
        return None
