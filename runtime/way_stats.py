"""What drafting one way (an exit layer, for layer drafting) has shown the draft planner
(runtime/draft_control.py): where its drafts are rejected, and what a drafted token costs."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DECAY = 0.95  # per verify pass: acceptance statistics of about the last 20 passes
# a timing above STALL_RATIO times what the planner expects of it (the moving average it
# goes into; for a probe's round, its predicted cost) counts as that much: a stall of the
# machine (another process, paging) once priced exit 1's draft step of the default package
# at 413 ms against 0.5 ms, and drafting accepted 99% of the time stayed off for the rest
# of the run; a real slow-down of 4x or more still shows within a few rounds
STALL_RATIO = 4.0


@dataclass
class WayStats:
    """What drafting one way has shown: decayed counts of drafts that reached, and were
    rejected at, each position; a drafted token's cost in plain passes of the time it ran
    (EMA, None until timed) in rounds of drafting that is on (warm), and in probes' rounds
    (cold, dearer: used until a warm round is timed, or where cheaper than a warm figure
    timed before them); and a draft step's cost in plain passes before then (e.g. from
    weight counts). In plain passes, not seconds: a shared machine's speed drifts, and
    steps timed while it was slow, priced against plain passes timed once it was fast,
    kept drafting off."""
    reached: np.ndarray
    rejected: np.ndarray
    step_passes: float | None = None
    cold_step_passes: float | None = None
    cold_is_newer: bool = False  # the cold figure was timed after the warm one
    prior_step: float = 0.0
    last_round: int = -1  # the planner's round count when the way last drafted (-1: never)
    _adds: int = 0

    @classmethod
    def empty(cls, max_draft: int) -> "WayStats":
        return cls(np.zeros(max_draft), np.zeros(max_draft))

    def add(self, drafted: int, accepted: int) -> None:
        """A verify pass of `drafted` drafts accepted the first `accepted` (older passes
        decay; a count that decays below 1e-30 is dropped, as floats that small would slow
        every later pass's arithmetic)."""
        self.reached *= DECAY
        self.rejected *= DECAY
        self.reached[:min(accepted + 1, drafted)] += 1.0
        if accepted < drafted:
            self.rejected[accepted] += 1.0
        self._adds += 1
        if self._adds % 256 == 0:
            self.reached[self.reached < 1e-30] = 0.0
            self.rejected[self.rejected < 1e-30] = 0.0


def timed_step(s: WayStats, step: float, warm: bool) -> None:
    """A round's cost per drafted token (in plain passes) into the way's moving averages:
    warm for drafting that is on, else cold (a probe's rounds). Planning prices steps warm
    once it can: on JFLEG dev, exit 1 of the default package, a probe's first round timed a
    step at 0.77 ms against 0.47-0.63 ms while drafting ran, and priced that way, drafting
    that pays 1.1x stayed off."""
    s.cold_is_newer = not warm
    # each capped at STALL_RATIO times the figure before it (a first warm one: the cold one)
    if warm:
        before = s.cold_step_passes if s.step_passes is None else s.step_passes
        s.step_passes = moving_average(s.step_passes, capped(step, before))
    else:
        s.cold_step_passes = moving_average(s.cold_step_passes,
                                            capped(step, s.cold_step_passes))


def moving_average(average: float | None, sample: float, weight: float = 0.3) -> float:
    """`average` moved toward `sample` by `weight` (the sample itself when None)."""
    return sample if average is None else (1 - weight) * average + weight * sample


def capped(sample: float, expected: float | None) -> float:
    """A timing, capped at STALL_RATIO times what is expected of it (None: nothing yet)."""
    return sample if expected is None else min(sample, STALL_RATIO * expected)
