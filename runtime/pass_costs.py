"""What a verify pass costs, as the draft planner models it (runtime/draft_control.py):
seconds = base * (1 + beta * k) + extra * (k > 0) for a pass verifying k drafted tokens
(k = 0: a plain pass), fitted online over a window of recent passes."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

WINDOW = 32  # recent passes the line is fitted to
RESUM_EVERY = 1024  # passes between exact recounts of the window's running sums


@dataclass
class PassCosts:
    # verify-pass cost grows ~6% per extra token on a t5-small-shaped int8 decoder, 2 threads
    # (measured with a verify pass of k tokens vs 1); refitted online from pass timings
    beta: float = 0.06
    base_s: float | None = None  # seconds of a pass with no drafts
    round_extra_s: float = 0.0   # seconds a round with drafts costs beyond base * (1 + beta k)
    _points: deque = field(default_factory=lambda: deque(maxlen=WINDOW))  # (k, seconds)
    # n, k, t, k^2, k*t of the _points with drafts; n, t of those without (Python floats:
    # they change every few passes, and numpy arrays this small cost more than they save)
    _sums: list = field(default_factory=lambda: [0.0] * 5)
    _plain_sums: list = field(default_factory=lambda: [0.0] * 2)
    _added: int = 0

    def add(self, k: int, seconds: float) -> None:
        """A round of k drafts (k = 0: a plain pass) took `seconds`: into the window and its
        running sums (the fit runs after every verify round, so it must not walk the
        window)."""
        if len(self._points) == self._points.maxlen:
            self._count(*self._points[0], sign=-1.0)
        self._points.append((k, seconds))
        self._count(k, seconds, sign=1.0)
        self._added += 1
        if self._added % RESUM_EVERY == 0:  # now and then exactly, so rounding cannot pile up
            self._sums, self._plain_sums = [0.0] * 5, [0.0] * 2
            for k_, t_ in self._points:
                self._count(k_, t_, sign=1.0)

    def _count(self, k: int, seconds: float, sign: float) -> None:
        if k:
            sums = self._sums
            sums[0] += sign
            sums[1] += sign * k
            sums[2] += sign * seconds
            sums[3] += sign * k * k
            sums[4] += sign * k * seconds
        else:
            self._plain_sums[0] += sign
            self._plain_sums[1] += sign * seconds

    def fit(self, settled: bool) -> None:
        """base from plain passes; beta and the extra from rounds with drafts (a line over
        their k; with one k only, the previous two scaled to its level). Without plain
        passes, the line's intercept is the base and the extra 0. Rounds with drafts only
        once `settled` (the planner's min_rounds): a fresh engine's first verify passes
        also pay for onnxruntime's allocations for new shapes, which read as a steep beta
        (and plans from the prior's cost ratios do not depend on timings at all)."""
        n0, sum_t0 = self._plain_sums
        n, sum_k, sum_t, sum_kk, sum_kt = self._sums
        if n0 >= 0.5:
            self.base_s = max(sum_t0 / n0, 1e-6)
        if n < 0.5 or not settled:
            return
        mean_k, mean_t = sum_k / n, sum_t / n
        var = sum_kk - n * mean_k * mean_k
        slope = (sum_kt - n * mean_k * mean_t) / var if var > 1e-9 else None
        if n0 < 0.5:  # no plain pass in the window: the line, less the extra a round paid
            # when plain passes were last timed beside rounds. Folded into the plain pass
            # instead, a round's own bookkeeping made every plain pass look that much dearer
            # while drafting stayed on (the default package's layer drafting on JFLEG's
            # long sentences: plain passes priced 0.54 ms against 0.45 ms timed, drafting
            # kept on at 0.84x plain's speed)
            # (dropped where the rounds no longer bear it: at most half of a round's cost)
            extra = self.round_extra_s if 2 * self.round_extra_s <= mean_t else 0.0
            self.round_extra_s = extra
            if slope is None:
                self.base_s = max((mean_t - extra) / (1 + self.beta * mean_k), 1e-6)
                return
            self.base_s = max(mean_t - slope * mean_k - extra, 1e-6)
            self.beta = min(max(slope / self.base_s, 0.0), 1.0)
            return
        base = self.base_s
        if slope is not None:
            self.beta = min(max(slope / base, 0.0), 1.0)
            self.round_extra_s = max(mean_t - base * self.beta * mean_k - base, 0.0)
            return
        # one draft length only: its level is known, not how it splits between beta and the
        # extra, so both are scaled to meet it
        excess, modeled = max(mean_t - base, 0.0), base * self.beta * mean_k + self.round_extra_s
        scale = excess / modeled if modeled > 0 else 0.0
        self.beta = min(self.beta * scale if modeled > 0 else excess / (base * mean_k), 1.0)
        self.round_extra_s *= scale
