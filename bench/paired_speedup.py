"""A speedup that the noise of a shared machine moves less, with a confidence interval.

The ratio of two configurations' median total times moves with every burst of load from
other tenants: on the 2-core AMD EPYC of the README's tables, three identical plain-greedy
configurations interleaved 25 JFLEG sentences at a time differed by 0.95x-1.03x round
by round, which is the size of the 5% rule the drafters are held to. Here each call's
time is its median over the repeats (a burst that slowed one repeat's call does not
count), the speedup is the ratio of those medians' sums, and a bootstrap over chunks of
consecutive calls (the calls a burst hits together) gives its 95% interval. Where a run
has few calls (Whisper's two clips), each clip's two runs in a repeat are a pair (the
configurations transcribed it one after the other), and the median of the pairs' ratios
stands, with a bootstrap interval over the pairs."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SLOWDOWN_BOUND = 0.95  # the rule: never more than 5% slower than plain greedy
RESAMPLES = 2000


@dataclass(frozen=True)
class PairedSpeedup:
    speedup: float  # plain's summed per-call medians over this configuration's
    low: float      # 95% bootstrap interval
    high: float

    @property
    def verdict(self) -> str:
        """What this run shows of the rule that a configuration is never more than 5%
        slower than plain greedy: "holds" when the whole interval is at 0.95x or above,
        "broken" when it is all below, else "unresolved" (the run cannot tell)."""
        if self.low >= SLOWDOWN_BOUND:
            return "holds"
        if self.high < SLOWDOWN_BOUND:
            return "broken"
        return "unresolved"

    def to_json(self) -> dict:
        return {"speedup": self.speedup, "ci95": [self.low, self.high], "verdict": self.verdict}

    @classmethod
    def from_json(cls, data: dict) -> PairedSpeedup:
        """As to_json wrote it; the verdict is derived again from the figures (runs before
        its labels were renamed stored others)."""
        return cls(data["speedup"], *data["ci95"])

    def cells(self) -> list[str]:
        """The table cells: the speedup with its interval, and the verdict."""
        return [f"{self.speedup:.2f}x [{self.low:.2f}-{self.high:.2f}]", self.verdict]


def paired_speedup(plain_runs: list[list[float]], runs: list[list[float]], chunk: int,
                   resamples: int = RESAMPLES, seed: int = 0) -> PairedSpeedup:
    """plain_runs, runs: per repeat, the seconds of each call (the same calls, in order,
    in every repeat of both). `chunk`: consecutive calls resampled together."""
    plain, mine = _call_medians(plain_runs), _call_medians(runs)
    if len(plain) != len(mine) or not len(plain):
        raise ValueError(f"paired calls differ: {len(plain)} plain, {len(mine)} here")
    bounds = range(0, len(plain), max(1, chunk))
    chunks = np.array([[plain[i:i + chunk].sum(), mine[i:i + chunk].sum()] for i in bounds])
    return _bootstrap(chunks, lambda c: c[..., 0].sum(axis=-1) / c[..., 1].sum(axis=-1),
                      resamples, seed)


def repeat_paired_speedup(plain: list[float], mine: list[float], resamples: int = RESAMPLES,
                          seed: int = 0) -> PairedSpeedup:
    """plain, mine: the seconds of each pair's two runs, made one after the other."""
    if len(plain) != len(mine) or not plain:
        raise ValueError(f"paired repeats differ: {len(plain)} plain, {len(mine)} here")
    ratios = np.asarray(plain, float) / np.asarray(mine, float)
    return _bootstrap(ratios, lambda r: np.median(r, axis=-1), resamples, seed)


def _bootstrap(units: np.ndarray, statistic, resamples: int, seed: int) -> PairedSpeedup:
    """`statistic` of the units (along their first axis), and its 95% percentile interval
    over resamples of them with replacement."""
    picks = np.random.default_rng(seed).integers(0, len(units), (resamples, len(units)))
    low, high = np.percentile(statistic(units[picks]), [2.5, 97.5])
    return PairedSpeedup(float(statistic(units)), float(low), float(high))


def _call_medians(repeats: list[list[float]]) -> np.ndarray:
    if len({len(r) for r in repeats}) > 1:
        raise ValueError("every repeat must time the same calls")
    return np.median(np.asarray(repeats, float), axis=0)
