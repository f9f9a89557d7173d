"""Word-level changes between the input and the corrected text (difflib), for the page
to highlight and the terminal to mark up."""
from __future__ import annotations

import difflib
import enum
from dataclasses import dataclass


class Op(str, enum.Enum):
    EQUAL = "equal"
    INSERT = "insert"
    DELETE = "delete"
    REPLACE = "replace"


@dataclass(frozen=True)
class Change:
    op: Op
    before: str  # words of the input ("" for an insertion), single-space joined
    after: str   # words of the output ("" for a deletion)

    def to_json(self) -> dict:
        return {"op": self.op.value, "before": self.before, "after": self.after}


def word_diff(before: str, after: str) -> list[Change]:
    """Changes that turn `before` into `after`, on whitespace-separated words."""
    a, b = before.split(), after.split()
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    return [Change(Op(tag), " ".join(a[i1:i2]), " ".join(b[j1:j2]))
            for tag, i1, i2, j1, j2 in matcher.get_opcodes()]


def marked(changes: list[Change], color: bool = False) -> str:
    """git --word-diff style: [-deleted-]{+inserted+}; with `color`, ANSI red / green."""
    def deleted(words: str) -> str:
        return f"\x1b[31;9m{words}\x1b[0m" if color else f"[-{words}-]"

    def inserted(words: str) -> str:
        return f"\x1b[32m{words}\x1b[0m" if color else f"{{+{words}+}}"

    parts = []
    for c in changes:
        if c.op == Op.EQUAL:
            parts.append(c.before)
        elif c.op == Op.DELETE:
            parts.append(deleted(c.before))
        elif c.op == Op.INSERT:
            parts.append(inserted(c.after))
        else:
            parts.append(deleted(c.before) + inserted(c.after))
    return " ".join(parts)


def changed_words(changes: list[Change]) -> int:
    """Input words deleted or replaced plus output words inserted."""
    return sum(len(c.before.split()) + len(c.after.split()) for c in changes if c.op != Op.EQUAL)
