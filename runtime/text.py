"""Text in and out: tokenizer.json through the `tokenizers` library (no transformers)."""
from __future__ import annotations

import numbers
from pathlib import Path
from typing import Sequence

from edgeseq.errors import InputError

Inputs = str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]]


class TextCodec:
    def __init__(self, tokenizer_file: Path | None):
        self._tok = None
        if tokenizer_file is not None:
            from tokenizers import Tokenizer
            self._tok = Tokenizer.from_file(str(tokenizer_file))

    @property
    def has_tokenizer(self) -> bool:
        return self._tok is not None

    def encode(self, text: str) -> list[int]:
        if self._tok is None:
            raise InputError("this package is ids-only (exported without a tokenizer): pass "
                             "token ids (list[int]) instead of text, or re-export with --tokenizer")
        if not isinstance(text, str):
            raise InputError(f"expected text, got {type(text).__name__}")
        if not text.strip():
            raise InputError("input text is empty or whitespace only")
        return self._tok.encode(text).ids

    def decode(self, ids: Sequence[int]) -> str:
        if self._tok is None:
            return ""
        return self._tok.decode(list(ids), skip_special_tokens=True)


def normalise_inputs(inputs: Inputs) -> tuple[list[str | list[int]], bool]:
    """A flat list of single inputs (text or ids), and whether the caller passed a batch."""
    if isinstance(inputs, str):
        return [inputs], False
    if isinstance(inputs, (list, tuple)):
        if not inputs:
            raise InputError("empty input list")
        if all(isinstance(x, numbers.Integral) and not isinstance(x, bool) for x in inputs):
            return [[int(t) for t in inputs]], False
        if all(isinstance(x, str) for x in inputs):
            return list(inputs), True
        if all(isinstance(x, (list, tuple)) for x in inputs):
            rows = [list(x) for x in inputs]
            for row in rows:
                if not row:
                    raise InputError("empty token id list in batch")
                if not all(isinstance(t, numbers.Integral) and not isinstance(t, bool) for t in row):
                    raise InputError("token id lists must hold only ints")
            return rows, True
    raise InputError("inputs must be a string, a list of strings, a list of token ids, "
                     f"or a list of token id lists; got {type(inputs).__name__}")
