"""How a batch is decoded when it speculates: its rows together in lockstep (one cache,
every row advancing by the batch's shortest accepted run, and running until its longest
row ends) or one after another (each advancing by its own accepted drafts, without the
batching). Chosen per chunk by measured tokens per second of each way on this engine,
drafter and batch size; the other way is re-measured now and then, since what pays
depends on the inputs (bench/speculative.py --batch measures both ways and the choice).

After a switch, new shapes make onnxruntime allocate (a single row after lockstep chunks
measured ~30% below its steady speed), so the first row of a one-after-another chunk is
not measured (its other rows are), and the first lockstep chunk after a switch is not
measured at all. Re-measuring one after another thus costs one chunk, not two: on JFLEG
dev in batches of 8 with layer drafting, where one after another runs at 0.6x, those
re-measurements were half of what the measured choice cost over lockstep (ad hoc, per
chunk against plain greedy: +0.28 s of 20.7 s)."""
from __future__ import annotations

from dataclasses import dataclass

EXPLORE_EVERY = 64  # chunks between re-measurements of the way not chosen
SMOOTHING = 0.3     # weight of the newest measurement in the moving averages
# A way re-measured at under this fraction of the other's speed is re-measured half as
# often the next time, down to once per EXPLORE_MOST chunks: a re-measurement costs a
# chunk (lockstep's: two, one warms up), and n-gram drafting on JFLEG goes 0.56x one row
# after another.
FAR_SLOWER = 0.75
EXPLORE_MOST = 1024


@dataclass
class BatchSchedule:
    batch: int
    alone: float | None = None      # tokens/s decoding rows one after another (EMA)
    together: float | None = None   # tokens/s decoding rows in lockstep (EMA)
    rows: int = 0                   # rows decoded since the other way was last measured
    _last: bool | None = None       # the way of the previous chunk
    _warming: bool = False          # the previous chunk switched ways: measure this one
    gap: int = EXPLORE_EVERY        # chunks until the way not chosen is measured again
    _exploring: bool = False        # the way being decoded is being re-measured

    def rows_alone(self, may_pay: bool = True) -> bool:
        """Whether the next chunk's rows decode one after another: the way of a chunk
        that just switched (so the switch is measured warm); else each way measured first
        (one after another first: it needs the smaller cache), then the faster, except
        once per `gap` chunks' worth of rows, when the other is measured again. Never
        while one after another cannot pay (may_pay=False: drafting one row is off)."""
        if not may_pay:
            return False
        if self._warming:
            return bool(self._last)
        if self.alone is None:
            return True
        if self.together is None:
            return False
        faster = self.alone > self.together
        if self.rows >= self.gap * self.batch:
            self.rows, self._exploring = 0, True
            return not faster
        return faster

    def record(self, alone: bool, tokens: int, seconds: float, rows: int,
               warm: bool = False) -> None:
        """A chunk of `rows` rows decoded one way; `tokens` in `seconds` is what was
        measured of it (warm: after its own warm-up, so it counts even after a switch)."""
        self.rows += rows
        self._warming = alone != self._last and not warm
        self._last = alone
        if self._warming:
            return
        rate = tokens / max(seconds, 1e-9)
        seen = self.alone if alone else self.together
        rate = rate if seen is None else (1 - SMOOTHING) * seen + SMOOTHING * rate
        if alone:
            self.alone = rate
        else:
            self.together = rate
        if self._exploring:  # the re-measured way, warm: still far slower?
            self._exploring = False
            other = self.together if alone else self.alone
            far = other is not None and rate < FAR_SLOWER * other
            self.gap = min(2 * self.gap, EXPLORE_MOST) if far else EXPLORE_EVERY
