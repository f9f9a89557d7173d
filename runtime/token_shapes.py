"""What a vocabulary's tokens look like, for input drafting: which tokens begin a word,
and which token is a lower-case word's capitalised twin. Read once from tokenizer.json's
vocabulary; no model involved."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# SentencePiece (T5, Marian, mBART) and byte-level BPE (BART, Whisper) word-start marks
WORD_MARKERS = ("\u2581", "\u0120")


@dataclass(frozen=True)
class TokenShapes:
    word_start: np.ndarray        # bool [vocab]: the token begins a word (or is special)
    capitalised: dict[int, int]   # lower-case word-start token -> its capitalised token

    @classmethod
    def from_vocab(cls, vocab: dict[str, int], special: set[int]) -> TokenShapes | None:
        """None when the vocabulary marks no word starts (then drafting stays literal)."""
        marker = max(WORD_MARKERS, key=lambda m: sum(t.startswith(m) for t in vocab))
        if not any(t.startswith(marker) for t in vocab):
            return None
        word_start = np.zeros(max(vocab.values()) + 1, bool)
        capitalised = {}
        for token, index in vocab.items():
            word_start[index] = token.startswith(marker) or index in special
            body = token[len(marker):] if token.startswith(marker) else None
            if body and body[0].islower():
                twin = vocab.get(marker + body[0].upper() + body[1:])
                if twin is not None:
                    capitalised[index] = twin
        return cls(word_start, capitalised)

    def starts_word(self, token: int) -> bool:
        return not 0 <= token < len(self.word_start) or bool(self.word_start[token])
