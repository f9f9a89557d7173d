"""Text in and out: tokenizer.json through the `tokenizers` library (no transformers)."""
from __future__ import annotations

import numbers
import re
import unicodedata
from functools import cached_property
from pathlib import Path
from typing import Sequence

from edgeseq.errors import InputError, PackageError
from .token_shapes import TokenShapes

Inputs = str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]]
# A surrogate code point that is not half of a high+low pair: a str can hold one (from
# errors="surrogateescape" or a broken UTF-16 source) but no UTF-8 tokenizer can take it.
_LONE_SURROGATE = re.compile("[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]")
# Unicode categories of characters that show nothing: format (zero-width, bidi marks,
# tags) and separators; control characters are text a caller may mean, and decode
_INVISIBLE = frozenset({"Cf", "Zs", "Zl", "Zp"})


class TextCodec:
    def __init__(self, tokenizer_file: Path | None):
        self._tok = None
        if tokenizer_file is not None:
            self._tok = _read_tokenizer(Path(tokenizer_file))

    @property
    def has_tokenizer(self) -> bool:
        return self._tok is not None

    def encode(self, text: str) -> list[int]:
        if self._tok is None:
            raise InputError("this package is ids-only (exported without a tokenizer): pass "
                             "token ids (list[int]) instead of text, or re-export with --tokenizer")
        if not isinstance(text, str):
            raise InputError(f"expected text, got {type(text).__name__}")
        text = valid_text(text)
        if not text.strip():
            raise InputError("input text is empty or whitespace only")
        if all(unicodedata.category(ch) in _INVISIBLE for ch in text):  # some tokenizers
            # map these to a word mark and <unk>, which the mask check below does not see
            raise InputError("input text has no visible characters (zero-width or other "
                             "format characters and spaces only)")
        encoding = self._tok.encode(text)
        if all(encoding.special_tokens_mask):
            raise InputError("input text is empty once the tokenizer drops the characters it "
                             "ignores (zero-width, format or control characters only)")
        return encoding.ids

    @cached_property
    def shapes(self) -> TokenShapes | None:
        """Word starts and capitalised twins of the vocabulary (None without a tokenizer
        or word-start marks): input drafting's guesses after an edit."""
        if self._tok is None:
            return None
        special = {i for i, t in self._tok.get_added_tokens_decoder().items() if t.special}
        return TokenShapes.from_vocab(self._tok.get_vocab(with_added_tokens=True), special)

    def decode(self, ids: Sequence[int]) -> str:
        if self._tok is None:
            return ""
        return self._tok.decode(list(ids), skip_special_tokens=True)


def _read_tokenizer(path: Path):
    from tokenizers import Tokenizer
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises a bare Exception for any unreadable file
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise PackageError(f"{path.parent}: {path.name} is not a tokenizer the `tokenizers` "
                           f"library can read ({reason}); re-export the package") from err
    return tok


def valid_text(text: str) -> str:
    """`text` with surrogate pairs joined into the characters they encode; InputError
    naming the position of a lone surrogate (not valid Unicode text)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    lone = _LONE_SURROGATE.search(text)
    if lone:
        raise InputError(f"input text holds a lone surrogate U+{ord(lone.group()):04X} at index "
                         f"{lone.start()}, which is not valid Unicode; decode the source bytes "
                         "with their real encoding (not errors='surrogateescape')")
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le")


def _bytes_error(data: bytes | bytearray | memoryview) -> InputError:
    try:
        bytes(data).decode("utf-8")
    except UnicodeDecodeError as err:
        return InputError(f"input is bytes that are not valid UTF-8 ({err.reason} at byte "
                          f"{err.start}); decode them with their real encoding and pass a str")
    return InputError("input is bytes; pass text as a str (e.g. data.decode('utf-8'))")


def normalise_inputs(inputs: Inputs) -> tuple[list[str | list[int]], bool]:
    """A flat list of single inputs (text or ids), and whether the caller passed a batch."""
    if isinstance(inputs, str):
        return [inputs], False
    if isinstance(inputs, (bytes, bytearray, memoryview)):
        raise _bytes_error(inputs)
    if isinstance(inputs, (list, tuple)):
        if not inputs:
            raise InputError("empty input list")
        blob = next((x for x in inputs if isinstance(x, (bytes, bytearray, memoryview))), None)
        if blob is not None:
            raise _bytes_error(blob)
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
