"""How many tokens to draft next: the length that maximises expected tokens per second,
from the measured acceptance and the measured cost of verify passes and drafting. When
no length beats plain decoding, it drafts nothing and probes again now and then, so a
drafter that does not pay switches itself off instead of slowing decoding down. Probes
back off exponentially while drafting keeps not paying: on a tiny model a probe (drafts
plus a longer verify pass) costs several plain passes.

Acceptance is modelled per draft position, not as one rate: input drafting on an editing
task is right for long stretches and wrong at the edits, so a draft's tail is far more
likely to be accepted than a fixed per-token rate predicts. Each position's rejection
rate (of drafts that reached it, decayed so recent passes count most) gives the chance a
draft survives to it; positions not yet tried borrow the pooled rate."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

DECAY = 0.95        # per verify pass: acceptance statistics of about the last 20 passes
PSEUDO_COUNT = 2.0  # weight of the pooled rate at a position (prior + shrinkage)


@dataclass
class ExitMemory:
    """What self-speculative drafting learned per exit layer: per-token acceptance (EMA)
    and seconds per draft step. Kept with the controller, so it outlives a call."""
    rate: dict[int, float] = field(default_factory=dict)
    draft_s: dict[int, float] = field(default_factory=dict)


@dataclass
class DraftController:
    max_draft: int
    adaptive: bool = True
    alpha: float = 0.6           # prior per-token acceptance, optimistic so drafting is tried
    # verify-pass cost grows ~6% per extra token on a t5-small-shaped int8 decoder, 2 threads
    # (measured with a verify pass of k tokens vs 1); refitted online from pass timings
    beta: float = 0.06
    probe_every: int = 8           # plain passes before the first probe once off
    max_probe_gap: int = 128       # probes back off (doubling) up to this many passes
    _base_s: float | None = None   # seconds of a pass with no drafts (EMA)
    _draft_s: float = 0.0          # seconds per drafted token (EMA)
    _off_rounds: int = 0
    _probe_gap: int = 0                          # current passes between probes (0: unset)
    _probing: bool = False                       # the last limit() was a probe
    _points: deque = field(default_factory=lambda: deque(maxlen=32))  # (k, seconds) of recent passes
    _observed: int = 0
    _empty: int = 0                              # rounds the drafter proposed nothing
    _best: int | None = None                     # planned draft length, until the next fit
    _reached: np.ndarray | None = None           # decayed count of drafts that reached position i
    _rejected: np.ndarray | None = None          # ... and were rejected at position i
    _lengths: np.ndarray | None = None           # 0 .. max_draft, the lengths limit() weighs
    exits: ExitMemory = field(default_factory=ExitMemory)  # layer drafting's per-exit stats

    def __post_init__(self) -> None:
        self._reached = np.zeros(self.max_draft)
        self._rejected = np.zeros(self.max_draft)
        self._lengths = np.arange(self.max_draft + 1)

    def survival(self) -> np.ndarray:
        """survival()[j]: chance that drafts 0..j are all accepted, j < max_draft."""
        pooled = (self._rejected.sum() + (1 - self.alpha)) / (self._reached.sum() + 1.0)
        hazard = (self._rejected + PSEUDO_COUNT * pooled) / (self._reached + PSEUDO_COUNT)
        return np.cumprod(1.0 - np.clip(hazard, 0.0, 0.995))

    def expected_tokens(self) -> np.ndarray:
        """[k] for k = 0..max_draft: tokens a verify pass of k drafts emits (the accepted
        drafts plus the target's own token)."""
        return 1.0 + np.concatenate([[0.0], np.cumsum(self.survival())])

    def cost(self, k):
        """Seconds of a pass verifying k drafts, drafting included (k an int or an array)."""
        return self.verify_cost(k) + self._draft_s * k

    def verify_cost(self, k):
        """Seconds of the decoder pass that verifies k drafts (1.0 before any timing)."""
        return (self._base_s or 1.0) * (1 + self.beta * k)

    @property
    def timed(self) -> bool:
        return self._base_s is not None

    def limit(self) -> int:
        if not self.adaptive:
            return self.max_draft
        if self._best is None:  # recomputed only after the estimates change (see _fit)
            rate = self.expected_tokens() / self.cost(self._lengths)
            self._best = int(rate.argmax())
            gain = float(rate[self._best]) * self.cost(0)
            # draft only for a predicted gain of 8% or more: estimates are noisy, and a
            # wrong "on" costs more than a wrong "off"
            if gain < 1.08:
                self._best = 0
            if self._best == 0 and self._probing:  # the probe did not pay: wait longer
                self._probe_gap = min(2 * self._probe_gap, self.max_probe_gap)
            elif self._best > 0:
                self._probe_gap = self.probe_every
            self._probing = False
        if self._best == 0:
            self._probe_gap = self._probe_gap or self.probe_every
            self._off_rounds += 1
            if self._off_rounds >= self._probe_gap:
                self._off_rounds, self._probing = 0, True
                return 2
            return 0
        self._off_rounds = 0
        return self._best

    def plain_passes(self) -> int:
        """After limit() returned 0: how many plain passes to run before asking again
        (the rest of the current gap between probes), counted as asked."""
        if not self.adaptive or self._best != 0:
            return 1
        left = max(1, self.probe_gap - self._off_rounds)
        self._off_rounds = max(self._off_rounds, self.probe_gap - 1)
        return left

    @property
    def probe_gap(self) -> int:
        """Plain passes between probes while drafting is off."""
        return self._probe_gap or self.probe_every

    def observe_plain(self, seconds: float) -> None:
        """A pass without drafts: the baseline cost. Refitted every 32 such passes only,
        so decoding with drafting off costs what plain decoding does."""
        self._points.append((0, seconds))
        self._observed += 1
        if self._observed % 32 == 0 or self._base_s is None:
            self._fit()
            self._best = None

    def observe_empty(self) -> None:
        """The drafter had nothing to propose: for planning, a round that gained no token
        (as a draft rejected at its first position), so a drafter that mostly finds
        nothing is switched off like one that is mostly wrong. Re-planned every 8."""
        self._reached *= DECAY
        self._rejected *= DECAY
        self._reached[0] += 1.0
        self._rejected[0] += 1.0
        self._empty += 1
        if self._empty % 8 == 0:
            self._best = None

    def observe(self, drafted: int, accepted: int, verify_s: float, draft_s: float) -> None:
        if drafted:
            self._reached *= DECAY
            self._rejected *= DECAY
            self._reached[:min(accepted + 1, drafted)] += 1.0
            if accepted < drafted:
                self._rejected[accepted] += 1.0
            self._draft_s = 0.7 * self._draft_s + 0.3 * draft_s / drafted
        self._points.append((drafted, verify_s))
        self._observed += 1
        if drafted or self._observed % 8 == 0 or self._base_s is None:
            self._fit()  # refit (and re-plan) after drafts, and every 8 plain passes
            self._best = None

    def _fit(self) -> None:
        """Least squares of seconds = base * (1 + beta * k) over recent passes."""
        ks = [k for k, _ in self._points]
        ts = [t for _, t in self._points]
        n = len(ks)
        mean_k, mean_t = sum(ks) / n, sum(ts) / n
        var = sum((k - mean_k) ** 2 for k in ks)
        if var > 0:
            slope = sum((k - mean_k) * (t - mean_t) for k, t in zip(ks, ts)) / var
            base = max(mean_t - slope * mean_k, 1e-6)
            self._base_s, self.beta = base, min(max(slope / base, 0.0), 1.0)
        elif self._base_s is None or mean_k == 0:
            self._base_s = mean_t / (1 + self.beta * mean_k)
