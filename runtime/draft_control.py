"""What to draft next: the drafting way (an exit layer, for layer drafting) and length that
maximise expected tokens per second, from the measured acceptance and the measured cost
of verify passes and draft steps. One planner for every drafter. When no choice beats
plain decoding, it drafts nothing and probes again now and then, so a drafter that does
not pay switches itself off instead of slowing decoding down. It switches on for a clear
predicted gain and, once on, stays on while drafting is predicted to pay at all, so noise
in the timings does not flip it off and on. Probes back off
exponentially while drafting keeps not paying: on a tiny model a probe (drafts plus a
longer verify pass) costs several plain passes. A probe is two rounds back to back, and
draft steps are priced from rounds of drafting that is on: a probe's, right after plain
passes, run cold, and priced so, drafting that paid looked as if it did not.

Acceptance is modelled per way and per draft position, not as one rate: input drafting on
an editing task is right for long stretches and wrong at the edits, so a draft's tail is
far more likely to be accepted than a fixed per-token rate predicts. Each position's
rejection rate (of drafts that reached it, decayed so recent passes count most) gives the
chance a draft survives to it; positions not yet tried borrow the way's pooled rate.

A drafter may also say what situation it drafts in (input drafting: the first pass, going
on after a fully accepted draft, or re-anchored after a rejection by an n-gram of some
length or by position alone). Each situation keeps its own acceptance by position, shrunk
toward the way's, and gets its own draft length: on JFLEG dev a draft re-anchored by
position alone is rejected at its first token 57% of the time, one that goes on after a
fully accepted draft 3%."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .pass_costs import PassCosts
from .way_stats import WayStats, capped, moving_average, timed_step

PSEUDO_COUNT = 2.0  # weight of the pooled rate at a position (prior + shrinkage)
ONLY_WAY = 0        # the way of drafters that have one (input, n-gram, a draft model)
ON_GAIN = 1.08      # drafting switches on for a predicted gain over plain passes of 8% or more
# and, once on by evidence, stays on while it is predicted to pay at all: with one threshold,
# noise in the timings of sub-millisecond passes flipped layer drafting on the default model
# off and on. Staying on down to 1.0 against 1.08, JFLEG dev, `python -m bench.planner_ab
# default`: 1.001x [0.991-1.010] and 1.011x [0.999-1.022]; two ad hoc runs 1.016x and 1.016x
STAY_ON_GAIN = 1.0
SETTLING_ROUNDS = 64  # rounds of drafts re-planned after each one, before REPLAN_EVERY applies
REPLAN_EVERY = 4
# while drafting is off, probes may cost this share of plain decoding's time: a draft
# model's probe (its encoder run, the output so far fed to it) costs several passes
PROBE_SHARE = 0.01
# tokens a probe drafts: after plain passes a probe's first draft steps run cold, and
# 2-token probes priced drafting too high (JFLEG dev, 400 sentences, alternating runs:
# layer drafting 0.94x and 0.97x plain with 2, 1.05x and 1.00x with 4; a draft model
# 1.07x and 1.12x, against 1.12x twice)
PROBE_LENGTH = 4
# rounds of drafts a probe runs, back to back: the second's verify pass, after a round of
# drafts, prices verify rounds (the first's runs cold); both time draft steps cold (_warm)
PROBE_ROUNDS = 2
# weight of the newest probe in the probes' moving average cost: priced by the last probe
# alone, a lucky one (every row's drafts accepted) set the gap to its floor, and layer
# drafting's probes in batches of 8 on JFLEG dev cost 2.2% of plain decoding, not 1%
PROBE_COST_SMOOTHING = 0.3


@dataclass(frozen=True)
class DraftPlan:
    way: int      # layer drafting: the exit layer; ONLY_WAY for other drafters
    length: int   # tokens to draft; 0: none (plain passes)
    situation: int | None = None  # the drafter's, when it named one and the length is its


@dataclass
class DraftController:
    max_draft: int
    adaptive: bool = True
    alpha: float = 0.6           # prior per-token acceptance, optimistic so drafting is tried
    prior_weight: float = 1.0    # how many drafted positions of evidence the prior is worth
    probe_every: int = 8           # plain passes before the first probe once off
    # rounds of drafts (or of a drafter proposing nothing) before drafting may switch off:
    # two early misses (an edited first word, say) must not end a fresh engine's drafting
    min_rounds: int = 6  # (unless the prior predicts no gain: _prior_off)
    max_probe_gap: int = 128       # probes back off (doubling) up to this many passes
    stay_on_gain: float = STAY_ON_GAIN  # drafting that is on goes off below this predicted gain
    costs: PassCosts = field(default_factory=PassCosts)  # a verify pass's seconds by its drafts
    ways: dict[int, WayStats] = field(default_factory=dict)  # kept across calls
    situations: dict[int, WayStats] = field(default_factory=dict)  # the drafter's, see above
    _situation_lengths: dict = field(default_factory=dict)  # situation -> length, until re-planned
    _call_passes: float | None = None  # tokens a call generates (moving average)
    _off_rounds: int = 0
    _probe_gap: int = 0                          # current passes between probes (0: unset)
    _probing: bool = False                       # the last plan() was a probe
    _probe_left: int = 0                         # rounds of the current probe still to run
    _probe_way: int = ONLY_WAY                   # the way the current probe drafts by
    _stalest_next: bool = False                  # the next probe drafts by the stalest way
    _probe_spent: float = 0.0                    # what the current probe cost so far, passes
    # what probes cost beyond the tokens they gave, in plain passes (a moving average: one
    # probe's all-accepted draft costs nothing, the next one's rejected draft 3 passes)
    _probe_cost: float | None = None
    _observed: int = 0
    _rounds: int = 0                             # rounds with drafts or empty proposals
    # the prior predicted no gain at all: drafting starts off and is only probed (not
    # forced for min_rounds: Whisper base's own head on its layers drafted 6 rounds of
    # exit 1, none accepted, on a fresh engine's first 10 s clip)
    _prior_off: bool = False
    _on: bool = False                            # the last plan drafted, past min_rounds
    _streak: int = 0                             # rounds of drafts in a row up to now
    _timed_after_drafts: bool = False            # a round that followed one priced verify rounds
    _empty: int = 0                              # rounds the drafter proposed nothing
    _best: DraftPlan | None = None               # the plan, until the next fit
    _lengths: np.ndarray | None = None           # 0 .. max_draft, the lengths plan() weighs
    # hazards and costs computed from the figures, until they change: planning asks for
    # the way's twice a round (its best length, a situation's shrunk toward it)
    _derived: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lengths = np.arange(self.max_draft + 1)

    @classmethod
    def for_copying(cls, max_draft: int) -> "DraftController":
        """Input drafting: editing tasks copy most of their input, so a fresh controller
        expects 95% of drafted tokens accepted, a prior worth 8 drafted positions (with the
        default prior, an edited first word and one more miss kept a fresh engine's drafts
        at one token for its whole first call)."""
        return cls(max_draft, alpha=0.95, prior_weight=8.0)

    def use_ways(self, prior_steps: dict[int, float]) -> None:
        """Draft by several ways (layer drafting's exits), each with a draft step's prior
        cost in plain passes; ways seen before keep what they learned."""
        for way, prior in prior_steps.items():
            if way not in self.ways or self.ways[way].prior_step != prior:
                self._way(way).prior_step = prior
                self._derived.clear()
                self._best = None  # re-planned only when the ways changed (every call asks)

    def _way(self, way: int) -> WayStats:
        if way not in self.ways:
            self.ways[way] = WayStats.empty(self.max_draft)
        return self.ways[way]

    def _ways(self) -> list[int]:
        """The ways drafting may take, in order (ONLY_WAY before any were named)."""
        return sorted(self.ways) or [ONLY_WAY]

    def _seen(self, way: int) -> WayStats:
        """The way's statistics, or an untried way's (nothing added to `ways`)."""
        return self.ways.get(way) or WayStats.empty(self.max_draft)

    def hazard(self, way: int = ONLY_WAY, situation: int | None = None,
               rates_from: WayStats | None = None) -> np.ndarray:
        """hazard[j]: chance a draft of way w that reached position j is rejected there;
        in a situation, or from one call's drafts (`rates_from`, not kept), their own counts
        shrunk toward the way's rates."""
        if rates_from is not None:
            return np.minimum(_shrunk(rates_from, self.hazard(way)), 0.995)
        key = ("hazard", way, situation)
        hazard = self._derived.get(key)
        if hazard is not None:
            return hazard
        if situation is None:
            s = self._seen(way)
            pooled = (s.rejected.sum() + self.prior_weight * (1 - self.alpha)) / \
                (s.reached.sum() + self.prior_weight)
            hazard = _shrunk(s, pooled)
        else:
            hazard = self.hazard(way)
            seen = self.situations.get(situation)
            if seen is not None:
                hazard = _shrunk(seen, hazard)
        hazard = self._derived[key] = np.minimum(hazard, 0.995)  # counts: never below 0
        return hazard

    def survival(self, way: int = ONLY_WAY, situation: int | None = None,
                 rates_from: WayStats | None = None) -> np.ndarray:
        """survival(w)[j]: chance that drafts 0..j of way w are all accepted, j < max_draft."""
        return np.cumprod(1.0 - self.hazard(way, situation, rates_from))

    def expected_tokens(self, way: int = ONLY_WAY, situation: int | None = None,
                        rates_from: WayStats | None = None) -> np.ndarray:
        """[k] for k = 0..max_draft: tokens a verify pass of k drafts emits (the accepted
        drafts plus the target's own token)."""
        tokens = np.empty(self.max_draft + 1)
        tokens[0] = 0.0
        np.cumsum(self.survival(way, situation, rates_from), out=tokens[1:])
        tokens += 1.0
        return tokens

    def cost(self, k, way: int = ONLY_WAY):
        """Seconds of a pass verifying k drafts of `way`, drafting included (k an int or
        an array). Untimed draft steps cost their prior; with adaptive=False the plan is
        never timed (reproducible sampling: a sampled draft's stream depends on its length)."""
        return self.verify_cost(k) + self._step_s(way) * k

    def _step_s(self, way: int) -> float:
        s = self._seen(way)
        # warm (drafting on) once timed so, but never dearer than probes since found a step
        # cold: then the warm figure is stale (probes do not time steps warm)
        timed = s.cold_step_passes if s.step_passes is None else \
            min(s.step_passes, s.cold_step_passes) if s.cold_is_newer else s.step_passes
        passes = timed if timed is not None and self.adaptive else s.prior_step
        return passes * self._plain_s

    def _cost_curve(self, way: int) -> np.ndarray:
        """cost(k, way) for k = 0 .. max_draft, as a line (three array operations: planning
        computes it every round)."""
        plain = self._plain_s
        curve = self._lengths * (plain * self.costs.beta + self._step_s(way))
        curve += plain + self.costs.round_extra_s
        curve[0] = plain
        return curve

    def verify_cost(self, k):
        """Seconds of a round that verifies k drafts, its bookkeeping included (1.0 for a
        plain pass before any timing): a round of drafts pays a fixed extra (verification,
        statistics) that a plain pass does not, which on a tiny model decides whether
        drafting pays."""
        return self._plain_s * (1 + self.costs.beta * k) + self.costs.round_extra_s * (np.asarray(k) > 0)

    @property
    def _plain_s(self) -> float:
        """verify_cost(0), without array arithmetic: a plain pass's seconds."""
        return self.costs.base_s or 1.0

    @property
    def timed(self) -> bool:
        return self.costs.base_s is not None

    def plan(self, situation: int | None = None,
             call: dict[int, WayStats] | None = None) -> DraftPlan:
        """What to draft this pass: the best plan (its length the situation's best, when
        the drafter names one), or while off, nothing but a short probe once per gap.
        Reads the plan once: concurrent calls share the controller, and another call's
        observe() may drop it meanwhile."""
        best = self._best
        if best is None or not self.adaptive:  # re-planned after estimates change
            best = self._best = self._replan()
            self._situation_lengths.clear()
        if best.length == 0:
            if situation is not None and self.adaptive:
                # off for the way as a whole, but a situation may still pay on its own: an
                # input draft at a sentence's start is right 98% of the time on JFLEG, even
                # while long sentences that the model rewrites pull the way's rates down
                length = self._situation_lengths.get(situation)
                if length is None:
                    length = self._situation_lengths[situation] = \
                        self._length_if_pays(situation, best.way)
                if length:
                    return DraftPlan(best.way, length, situation)
            self._probe_gap = self._probe_gap or self.probe_every
            self._off_rounds += 1
            if self._probe_left or self._off_rounds >= self._probe_gap:
                if not self._probe_left:  # a new probe: which way it drafts by
                    self._probe_way = self._stalest() if self._stalest_next else best.way
                    self._stalest_next = not self._stalest_next
                self._probe_left = (self._probe_left or PROBE_ROUNDS) - 1
                self._off_rounds, self._probing = 0, True
                return DraftPlan(self._probe_way, min(PROBE_LENGTH, self.max_draft), situation)
            return best
        self._off_rounds = 0
        if situation is None and call and best.way in call and self.adaptive:
            # this call's own drafts, shrunk toward the way's: an input whose drafts fail
            # more often than the pooled figures say (JFLEG's long sentences for layer
            # drafting: 0.5-0.7 accepted against ~0.9) drafts shorter at once
            rate = self._rate(best.way, rates_from=call[best.way])
            return DraftPlan(best.way, max(1, int(rate.argmax())))
        if situation is None or not self.adaptive:
            return best
        length = self._situation_lengths.get(situation)
        if length is None:
            length = self._situation_lengths[situation] = self._length_in(situation, best.way)
        return DraftPlan(best.way, length, situation)

    def _length_in(self, situation: int, way: int) -> int:
        """The best length for the way chosen, in a situation; at least 1 while drafting
        is on, so every situation keeps being measured."""
        return max(1, int(self._rate(way, situation).argmax()))

    def _length_if_pays(self, situation: int, way: int) -> int:
        """While the way is off: the situation's best length when that beats plain passes
        as clearly as the way must to switch on (_best_plan), else 0. Only for a
        situation that has drafted (and so has a curve of its own, shrunk toward the
        way's)."""
        if situation not in self.situations:
            return 0
        rate = self._rate(way, situation)
        k = int(rate.argmax())
        return k if k and rate[k] * self._plain_s >= ON_GAIN else 0

    def _rate(self, way: int, situation: int | None = None,
              rates_from: WayStats | None = None) -> np.ndarray:
        """Expected tokens per second of a verify round, by draft length 0 .. max_draft."""
        cost = self._derived.get(("cost", way))
        if cost is None:
            cost = self._derived[("cost", way)] = self._cost_curve(way)
        return self.expected_tokens(way, situation, rates_from) / cost

    def _replan(self) -> DraftPlan:
        best = self._best_plan()
        if best.length == 0 and self._probing and not self._probe_left:
            self._probe_gap = min(2 * self._probe_gap, self._longest_gap())  # did not pay: wait
        elif best.length > 0:
            self._probe_gap, self._probe_left, self._probe_spent = self.probe_every, 0, 0.0
        self._probing = False
        # on by evidence: a fresh controller's first rounds draft on the prior's word
        self._on = best.length > 0 and self._rounds >= self.min_rounds
        return best

    def _best_plan(self) -> DraftPlan:
        """The way and length with the most expected tokens per second; length 0 (off)
        unless that beats plain passes by 8%, then with the way likeliest to be accepted
        (the one a probe tries)."""
        ways = self._ways()
        if not self.adaptive:
            return DraftPlan(ways[-1], self.max_draft)
        best, best_rate, rates = DraftPlan(ways[-1], 0), 0.0, {}
        for way in ways:
            rate = rates[way] = self._rate(way)
            k = int(rate.argmax())
            if rate[k] > best_rate * 1.02:  # a deeper way (dearer steps) must win clearly
                best, best_rate = DraftPlan(way, k), float(rate[k])
        if self._rounds == 0:  # what the prior alone predicts, until drafts are seen
            self._prior_off = best.length == 0
            if self._prior_off and not self._probe_gap:
                # the first probe, too, within PROBE_SHARE of plain decoding's time, at its
                # prior cost: probes after 8 and 16 passes cost Whisper base's first short
                # clip one futile probe (exit steps at 0.6 of a pass, none accepted)
                self._probe_gap = max(self.probe_every, int(
                    self._prior_probe_passes(self._likeliest(ways)) / PROBE_SHARE))
        if self._rounds < self.min_rounds and not self._prior_off:
            # too little seen to give up on a drafter expected to pay: the best length
            if best.length == 0:
                best = DraftPlan(best.way, 1 + int(rates[best.way][1:].argmax()))
            return best
        # switch on only for a predicted gain of 8% or more: estimates are noisy, and a wrong
        # "on" costs more than a wrong "off"; once on, stay on while predicted to pay
        threshold = self.stay_on_gain if self._on else ON_GAIN
        if best.length == 0 or best_rate * self._plain_s < threshold:
            best = DraftPlan(self._likeliest(ways), 0)
        return best

    def _likeliest(self, ways: list[int]) -> int:
        """The way whose first draft is likeliest accepted: the one probed while off."""
        return max(ways, key=lambda w: self.survival(w)[0])

    def _stalest(self) -> int:
        """The way that drafted least recently (an untried one first). Every other probe
        drafts by it, the rest by the way likeliest accepted: on JFLEG dev, the default
        package, exit 1's figures held first drafts at 58-66% accepted after sentences the
        model rewrote (96-99% while it drafted), so probes went to exit 2 only and exit 1,
        which paid, stayed off for the rest of the run."""
        return min(self._ways(), key=lambda w: self._seen(w).last_round)

    def _prior_probe_passes(self, way: int) -> float:
        """What the prior predicts a probe of `way` costs beyond the tokens it gives, in
        plain passes (as observe() measures a probe's cost)."""
        k = min(PROBE_LENGTH, self.max_draft)
        return PROBE_ROUNDS * max(float(self.cost(k, way)) / self._plain_s
                                  - self.expected_tokens(way)[k], 0.0)

    def _longest_gap(self) -> int:
        """max_probe_gap, or as many plain passes as keep the measured cost of a probe
        within PROBE_SHARE of theirs (JFLEG dev, a one-layer draft model of the default
        package: probes every 128 passes made decoding 4-6% slower than plain)."""
        return max(self.max_probe_gap, int((self._probe_cost or 0.0) / PROBE_SHARE))

    def summary(self) -> dict:
        """What the planner believes now, for a reader (bench.draft_trace): the plan, a
        plain pass's cost, the fitted cost line, the probe gap, and per way the cost of a
        drafted token (warm, and cold: a probe's first round) and the chance that drafts
        survive to positions 1-4."""
        best = self._best
        return {"plan": None if best is None else {"way": best.way, "length": best.length},
                "plain_pass_ms": _ms(self.costs.base_s),
                "beta": self.costs.beta, "round_extra_ms": self.costs.round_extra_s * 1e3,
                "probe_gap": self.probe_gap, "probe_cost_passes": self._probe_cost or 0.0,
                "rounds": self._rounds,
                "ways": {str(way): {"step_ms": self._step_ms(s.step_passes),
                                    "cold_step_ms": self._step_ms(s.cold_step_passes),
                                    "survival": [round(float(x), 4) for x in self.survival(way)[:4]]}
                         for way, s in sorted(self.ways.items())}}

    def _step_ms(self, passes: float | None) -> float | None:
        """A drafted token's cost in plain passes, in milliseconds at the current plain pass."""
        return None if passes is None else passes * self._plain_s * 1e3

    def off_for_call(self) -> bool:
        """Drafting is off, and the next probe is not due within a call of the usual
        length: the call may decode plainly, outside the drafting loop (count_plain after
        it), which costs nothing over plain decoding. (Through the drafting loop, layer
        drafting switched off measured 0.96x plain speed on JFLEG dev.)"""
        best, call = self._best, self._call_passes  # one read each: calls run concurrently
        return (self.adaptive and best is not None and best.length == 0 and call is not None
                and not self._probe_left and self.probe_gap - self._off_rounds > call)

    def count_plain(self, passes: int) -> None:
        """A call decoded `passes` plain passes outside the drafting loop (off_for_call);
        they count toward the next probe."""
        self._off_rounds += passes
        if passes:  # untimed plain passes (observe_plain clears it for timed ones)
            self._streak = 0
        self.note_call(passes)

    def note_call(self, passes: int) -> None:
        """A call generated for `passes` passes' worth of tokens (a moving average)."""
        self._call_passes = passes if self._call_passes is None else \
            0.8 * self._call_passes + 0.2 * passes

    def plain_passes(self) -> int:
        """After plan() drafted nothing: how many plain passes to run before asking again
        (the rest of the current gap between probes)."""
        best = self._best
        if not self.adaptive or best is None or best.length != 0:
            return 1
        return max(1, self.probe_gap - self._off_rounds)

    def ran_plain(self, passes: int) -> None:
        """`passes` plain passes ran after a plan() that drafted nothing (which counted the
        first): a generation that ends sooner leaves the rest of the gap to the next."""
        best = self._best
        if best is not None and best.length == 0:
            self._off_rounds += max(0, passes - 1)

    @property
    def probe_gap(self) -> int:
        """Plain passes between probes while drafting is off."""
        return self._probe_gap or self.probe_every

    def observe_plain(self, seconds: float) -> None:
        """A pass without drafts: the baseline cost. Refitted every 32 such passes only,
        so decoding with drafting off costs what plain decoding does."""
        self._observed += 1
        self._streak = 0
        self.costs.add(0, seconds)
        if self._observed % 32 == 0 or self.costs.base_s is None:
            self.costs.fit(self._rounds >= self.min_rounds)
            self._derived.clear()
            self._best = None

    def observe_empty(self, way: int = ONLY_WAY) -> None:
        """The drafter had nothing to propose: for planning, a round that gained no token
        (as a draft rejected at its first position), so a drafter that mostly finds
        nothing is switched off like one that is mostly wrong. Re-planned every 8. A probe
        that found nothing ends: no draft step to time warm (and on a t5-small shape an
        n-gram table still empty early in a session made back-to-back probes back off
        twice as fast: 0.94-0.96 of the drafted tokens in its first 40 calls)."""
        self._probe_left = 0
        self._way(way).add(1, 0)
        self._derived.clear()
        self._rounds += 1
        self._empty += 1
        if self._empty % 8 == 0:
            self._best = None

    def observe(self, drafted: int, accepted: int, verify_s: float, draft_s: float,
                way: int = ONLY_WAY, situation: int | None = None, setup_s: float = 0.0) -> None:
        """A verify round: `draft_s` of drafting, of which `setup_s` was the drafter's
        one-off start in this call (a draft model's encoder run), which a probe's cost
        counts but the cost of a drafted token does not (a round that was all setup
        only stands in for that cost until other rounds measure it)."""
        self._derived.clear()
        if drafted:
            self._rounds += 1
            s = self._way(way)
            s.add(drafted, accepted)
            s.last_round = self._rounds
            if situation is not None:
                if situation not in self.situations:
                    self.situations[situation] = WayStats.empty(self.max_draft)
                self.situations[situation].add(drafted, accepted)
            step = (draft_s - setup_s) / drafted if not setup_s or setup_s < draft_s else \
                draft_s / drafted if s.step_passes is None and s.cold_step_passes is None else None
            if step is not None:  # else all setup, and steps timed before stand
                plain = self.costs.base_s or verify_s / (1 + self.costs.beta * drafted)
                timed_step(s, step / plain, warm=self._warm)
        if self._probing and drafted and self.costs.base_s:  # a round of the probe's
            spent = capped(verify_s + draft_s, float(self.cost(drafted, way)))
            self._probe_spent += max(spent / self.costs.base_s - accepted - 1, 0.0)
            if not self._probe_left:  # its last: what the whole probe cost
                cost, self._probe_spent = self._probe_spent, 0.0
                self._probe_cost = moving_average(self._probe_cost, cost, PROBE_COST_SMOOTHING)
        self._observed += 1
        after_drafts = self._streak > 0
        self._timed_after_drafts |= bool(drafted) and after_drafts
        if not drafted or after_drafts or not self._timed_after_drafts:
            # a round right after plain passes runs cold, its verify pass too (a probe's first
            # round on JFLEG dev: the line put 0.45-0.8 ms on a round of 4 drafts while off,
            # 0.35-0.42 ms on a round of 8 while on): rounds priced like steps, warm when any are
            self.costs.add(drafted, verify_s)
        self._streak = self._streak + 1 if drafted else 0
        if drafted or self._observed % 8 == 0 or self.costs.base_s is None:
            self.costs.fit(self._rounds >= self.min_rounds)  # after drafts, every 8 plain passes
            if self._replan_due(drafted):
                self._best = None

    @property
    def _warm(self) -> bool:
        """The round being observed runs as drafting that is on runs: after PROBE_ROUNDS
        rounds of drafts in a row, so never a probe's. Right after plain passes a round's
        draft steps and verify pass run cold; a probe's second round, too, priced exit 1's
        steps at 0.44-0.50 ms on JFLEG dev against 0.34-0.39 ms while drafting ran."""
        return self._streak >= PROBE_ROUNDS

    def _replan_due(self, drafted: int) -> bool:
        """Whether the plan is redone after this round: always while the figures are young,
        while drafting is off or after a probe, and then every REPLAN_EVERY rounds of drafts
        (a round's evidence moves the decayed figures by a few percent, and planning costs
        a fifth of a small model's verify round)."""
        best = self._best
        return (not drafted or best is None or best.length == 0 or self._probing
                or self._rounds <= SETTLING_ROUNDS or self._rounds % REPLAN_EVERY == 0)


def _shrunk(counts: WayStats, toward) -> np.ndarray:
    """Rejection rates by position from `counts`, each shrunk toward `toward` (a rate or
    rates) with the weight of PSEUDO_COUNT drafts that reached it."""
    return (counts.rejected + PSEUDO_COUNT * toward) / (counts.reached + PSEUDO_COUNT)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3
