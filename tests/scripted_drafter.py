"""A scripted drafter and the token-id sources the speculative specs decode."""
from __future__ import annotations

import numpy as np

from edgeseq.runtime.drafters import Draft

SOURCES = [[5, 9, 13, 22, 40, 7, 2], [30, 31, 8, 2], [11, 60, 61, 62, 63, 64, 65, 66, 67, 2]]


class ScriptedDrafter:
    """A drafter that proposes a scripted continuation of the output."""

    def __init__(self, script, wrong=False):
        self.script, self.wrong = script, wrong

    def propose(self, ctx):
        done = len(ctx.output[0]) - 1
        rows = []
        for script in self.script:
            tokens = list(script[done:done + ctx.limit + 3])  # overshoots: the loop trims
            rows.append([(t + 1) % 96 for t in tokens] if self.wrong else tokens)
        width = max(len(r) for r in rows)
        return Draft(np.array([r + [-1] * (width - len(r)) for r in rows], np.int64))

    def update(self, drafted, accepted):
        pass
