"""The draft controller plans what to draft from measured acceptance and costs, without
running a model (what the drafters propose: tests/test_drafter_proposals.py)."""
from __future__ import annotations

import numpy as np
import pytest

from edgeseq.runtime.draft_control import (ON_GAIN, PROBE_LENGTH, PROBE_ROUNDS, STAY_ON_GAIN,
                                           DraftController)
from edgeseq.runtime.way_stats import WayStats, timed_step


def _never_pays(control: DraftController, passes: int) -> list[int]:
    """Draft lengths asked for while every draft is rejected and each drafted token costs
    a full pass."""
    limits = []
    for _ in range(passes):
        k = control.plan().length
        control.observe(k, 0, verify_s=0.01 * (1 + k), draft_s=0.01 * k)
        limits.append(k)
    return limits


def test_the_controller_switches_drafting_off_when_it_does_not_pay_and_probes_again():
    control = DraftController(max_draft=8)
    _never_pays(control, 20)
    limits = [control.plan().length for _ in range(16)]
    assert limits.count(0) >= 14 and max(limits) <= PROBE_LENGTH  # off, with rare short probes
    for _ in range(500):  # drafts start being accepted and verifying is cheap
        k = control.plan().length
        control.observe(k, k, verify_s=0.01 * (1 + 0.02 * k), draft_s=0.0)
    assert control.plan().length >= 4


def _predicted_gain(control: DraftController) -> float:
    """The planner's best expected tokens per second over plain decoding's."""
    lengths = np.arange(control.max_draft + 1)
    return float((control.expected_tokens() / control.cost(lengths)).max() * control.verify_cost(0))


def _accepted_rounds(control: DraftController, passes: int, step_s: float) -> list[int]:
    """Draft lengths asked for while every draft is accepted, a plain pass takes 10 ms
    and each drafted token `step_s`."""
    lengths = []
    for _ in range(passes):
        k = control.plan().length
        if k:
            control.observe(k, k, verify_s=0.010 * (1 + 0.06 * k), draft_s=step_s * k)
        else:
            control.observe_plain(0.010)
        lengths.append(k)
    return lengths


def test_drafting_switches_on_for_a_clear_gain_and_stays_on_while_it_pays_at_all():
    """Hysteresis: timings of sub-millisecond passes are noisy, and one threshold flipped
    drafting that paid off and on. Switching on needs a predicted gain of ON_GAIN; once
    on, drafting stays on down to STAY_ON_GAIN, and goes off below it."""
    assert STAY_ON_GAIN < ON_GAIN
    on = DraftController(max_draft=8)
    on.observe_plain(0.010)
    assert _accepted_rounds(on, 100, step_s=0.001)[-20:] == [8] * 20  # a clear gain: on
    assert _accepted_rounds(on, 200, step_s=0.009)[-20:] == [8] * 20  # dearer steps: still on
    assert STAY_ON_GAIN < _predicted_gain(on) < ON_GAIN
    assert _accepted_rounds(on, 200, step_s=0.012)[-20:].count(0) >= 18  # no gain: off
    fresh = DraftController(max_draft=8)  # the same middling figures from the start
    fresh.observe_plain(0.010)
    assert _accepted_rounds(fresh, 300, step_s=0.009)[-30:].count(0) >= 28  # never switched on
    assert STAY_ON_GAIN < _predicted_gain(fresh) < ON_GAIN


def test_a_fresh_controller_keeps_drafting_through_its_first_misses():
    """Two early misses (an edited first word, a rewritten second one) and slow first
    passes (onnxruntime allocating for new shapes) must not switch a fresh engine's
    drafting off: it waits for min_rounds rounds before judging."""
    control = DraftController.for_copying(64)
    control.observe_plain(0.0004)
    control.observe(19, 0, verify_s=0.004, draft_s=0.0)
    control.observe(8, 0, verify_s=0.003, draft_s=0.0)
    assert control.plan().length >= 2


def test_a_drafter_its_prior_expects_nothing_from_starts_off_and_is_probed():
    """Draft steps that cost most of a pass (Whisper base's own head on its layers): the
    prior predicts no gain, so a fresh controller does not force min_rounds rounds of
    drafts on the first call; it decodes plainly and probes once per gap."""
    control = DraftController(max_draft=8)
    control.use_ways({1: 0.6, 3: 0.8})
    limits = _never_pays(control, 40)
    assert limits[:control.probe_every - 1] == [0] * (control.probe_every - 1)
    assert sum(k > 0 for k in limits) <= 2 and max(limits) <= PROBE_LENGTH
    cheap = DraftController(max_draft=8)  # cheap steps: expected to pay, so drafted at once
    cheap.use_ways({1: 0.05})
    assert cheap.plan().length >= 1


def test_a_drafter_its_prior_expects_nothing_from_is_first_probed_within_the_probe_share():
    """Its first probe, like later ones, may cost PROBE_SHARE of plain decoding's time at
    the prior's price: not after probe_every passes (Whisper base's first 10 s clip paid
    a futile probe there)."""
    from edgeseq.runtime.draft_control import PROBE_SHARE
    control = DraftController(max_draft=8)
    control.use_ways({1: 0.6, 3: 0.8})
    prior_cost = 0.6 * PROBE_LENGTH + (1 + control.costs.beta * PROBE_LENGTH) - \
        control.expected_tokens(1)[PROBE_LENGTH]  # drafts at exit 1, verified, less its tokens
    limits = _never_pays(control, 400)
    first = limits.index(next(k for k in limits if k > 0))
    assert first >= int(prior_cost / PROBE_SHARE) - 1 > control.probe_every
    assert sum(k > 0 for k in limits) <= 3  # and later probes back off from there


def _lengths_through_a_collapse() -> list[int]:
    """Draft lengths planned after 72 rounds of accepted drafts, once every draft starts
    being wrong (a drafted token costing a pass)."""
    control = DraftController(max_draft=8)
    for _ in range(72):
        k = control.plan().length
        control.observe(k, k, verify_s=0.01 * (1 + 0.02 * k), draft_s=0.0)
    lengths = []
    for _ in range(80):
        k = control.plan().length
        lengths.append(k)
        control.observe(k, 0, verify_s=0.01 * (1 + k), draft_s=0.0)
    return lengths


def test_settled_figures_are_re_planned_every_few_rounds_not_every_round(monkeypatch):
    from edgeseq.runtime import draft_control
    every = draft_control.REPLAN_EVERY
    assert draft_control.SETTLING_ROUNDS < 72
    cadenced = _lengths_through_a_collapse()
    monkeypatch.setattr(draft_control, "REPLAN_EVERY", 1)
    each_round = _lengths_through_a_collapse()
    first_change = lambda ls: next(i for i in range(1, len(ls)) if ls[i] != ls[i - 1])  # noqa: E731
    assert 0 <= first_change(cadenced) - first_change(each_round) < every
    assert cadenced[-8:].count(0) >= 8 - PROBE_ROUNDS  # and drafting ends up off (a probe at most)


def _rejected_rounds(control: DraftController, passes: int, draft_s: float) -> list[int]:
    """Draft lengths asked for while every draft is rejected; a plain pass costs 10 ms,
    a verify pass 2% more per draft, and drafting costs `draft_s` a round."""
    limits = []
    for _ in range(passes):
        k = control.plan().length
        control.observe(k, 0, verify_s=0.01 * (1 + 0.02 * k), draft_s=draft_s if k else 0.0)
        limits.append(k)
    return limits


def test_probes_back_off_while_drafting_keeps_not_paying():
    control = DraftController(max_draft=8, probe_every=8, max_probe_gap=128)
    limits = _rejected_rounds(control, 2000, draft_s=0.0)
    probes_late = sum(k > 0 for k in limits[1000:])
    assert control.probe_gap == 128
    assert probes_late <= PROBE_ROUNDS * (1000 // 128 + 1)  # a probe per 128 passes, not per 8


def test_probes_that_cost_several_passes_wait_until_they_cost_one_percent():
    """A draft model's probe runs its own encoder and catches up on the output: on
    JFLEG dev probes every 128 passes made decoding 4% slower than plain."""
    control = DraftController(max_draft=8, probe_every=8, max_probe_gap=128)
    limits = _rejected_rounds(control, 4000, draft_s=0.05)
    # each round of a probe costs 5 passes more than its tokens give (and 2% of a pass per
    # drafted token): 1% of about 500 plain passes per round
    gap = PROBE_ROUNDS * 500
    assert gap <= control.probe_gap <= gap + PROBE_ROUNDS * 2 * PROBE_LENGTH
    assert sum(k > 0 for k in limits[2000:]) <= PROBE_ROUNDS * (2000 // gap + 1)


def test_one_lucky_probe_does_not_bring_probes_back_to_their_floor():
    """Probes are priced by their moving average: a batch's probe whose drafts every row
    accepted costs nothing, but the next one's rejected drafts several passes (layer
    drafting, batches of 8 on JFLEG dev: probes priced by the last one alone cost 2.2%)."""
    control = DraftController(max_draft=8, probe_every=8, max_probe_gap=128)
    _rejected_rounds(control, 4000, draft_s=0.05)  # probes costing 5 passes: gap ~500
    while control.plan().length == 0:  # up to the next probe, whose drafts all pass
        control.observe(0, 0, verify_s=0.01, draft_s=0.0)
    control.observe(PROBE_LENGTH, PROBE_LENGTH, verify_s=0.01 * (1 + 0.02 * PROBE_LENGTH),
                    draft_s=0.0)
    for _ in range(3):  # planning after it; drafting still does not pay overall
        control.observe(0, 0, verify_s=0.01, draft_s=0.0)
        control.plan()

    assert control.probe_gap >= 300  # not 128


def test_probes_never_draft_more_than_max_draft():
    control = DraftController(max_draft=1)
    assert max(_never_pays(control, 200)) == 1


def test_short_generations_do_not_each_start_with_a_probe():
    """Plain passes are counted as they run: a call that ends inside the gap between
    probes leaves the rest of it to the next call (Whisper decodes 30 s windows)."""
    control = DraftController(max_draft=8, probe_every=8, max_probe_gap=128)
    _never_pays(control, 2000)  # the gap is at its longest now
    probes = 0
    for _ in range(64):  # 64 calls of 20 tokens: 1,280 passes
        generated = 0
        while generated < 20:
            plan = control.plan()
            if plan.length:
                probes += 1
                control.observe(plan.length, 0, verify_s=0.01 * (1 + plan.length),
                                draft_s=0.01 * plan.length)
                generated += 1
                continue
            ran = min(control.plain_passes(), 20 - generated)
            control.ran_plain(ran)
            generated += ran
    assert probes <= 1280 // 128 + 1


def _simulate(control: DraftController, accept, passes: int) -> list[int]:
    """Draft lengths asked for when a draft of k tokens has accept(k) accepted and a
    verify pass costs 5% more per drafted token (t5-small int8 measured ~6%)."""
    limits = []
    for _ in range(passes):
        k = control.plan().length
        control.observe(k, accept(k), verify_s=0.01 * (1 + 0.05 * k), draft_s=0.0)
        limits.append(k)
    return limits


def test_the_controller_learns_where_drafts_break():
    """Drafts right for exactly 3 tokens: longer ones only cost more (a 4th is tried
    now and then, as what is known about position 4 fades)."""
    control = DraftController(max_draft=32)
    limits = _simulate(control, lambda k: min(k, 3), 200)
    assert set(limits[-20:]) <= {3, 4} and limits[-20:].count(3) >= 10


def test_the_controller_drafts_long_when_acceptance_comes_in_stretches():
    """Copying stretches (input drafting on an edit task): a draft is wholly right or
    wrong at once. A single per-token rate (0.5 here) would cap drafts at a few tokens."""
    stretch = iter([True, False] * 1000)
    control = DraftController(max_draft=32)
    limits = _simulate(control, lambda k: k if next(stretch) else 0, 400)
    assert min(limits[-40:]) >= 24


def test_each_situation_the_drafter_names_gets_its_own_draft_length():
    """Drafts that go on after a fully accepted one are right to the end; drafts
    re-anchored by position alone are wrong at once. One pooled curve would give both the
    same middling length; per situation, the first drafts long and the second one token
    (never none: a situation that drafted nothing could never be measured again)."""
    going_on, aligned = 1, 2
    control = DraftController(max_draft=32)
    control.observe_plain(0.010)
    for i in range(200):
        situation = (going_on, aligned)[i % 2]
        k = control.plan(situation).length
        accepted = k if situation == going_on else 0
        control.observe(k, accepted, verify_s=0.010 * (1 + 0.05 * k), draft_s=0.002 * k,
                        situation=situation)
    assert control.plan(going_on).length >= 24
    assert control.plan(aligned).length == 1
    assert control.plan(going_on).situation == going_on


def test_a_situation_that_pays_keeps_drafting_while_the_way_as_a_whole_is_off():
    """Sentence starts are copied (every draft right); re-anchored drafts in sentences the
    model rewrites are wrong; a draft step costs a fifth of a pass. Many more of the second
    kind switch the way off, but a new sentence's first pass still drafts, and the rest
    still waits for probes. (With free draft steps the way as a whole was predicted to
    pay 7%: off only while switching on took 8%.)"""
    start, aligned = 0, 2
    control = DraftController(max_draft=32)
    control.observe_plain(0.010)
    for i in range(300):
        situation = start if i % 10 == 0 else aligned
        k = control.plan(situation).length
        accepted = k if situation == start else 0
        if k:
            control.observe(k, accepted, verify_s=0.010 * (1 + 0.05 * k), draft_s=0.002 * k,
                            situation=situation)
        else:
            control.observe_plain(0.010)
    assert control.plan().length == 0  # off for the way
    assert control.plan(start).length >= 4
    assert control.plan(aligned).length == 0


def _layer_controller(exits, base_s=0.010) -> DraftController:
    """A controller that has timed a plain pass (base_s), set up by a layer drafter."""
    from edgeseq.runtime.drafters import SelfDrafter
    control = DraftController(8)
    control.observe_plain(base_s)
    SelfDrafter(None, 6, None, False, None, control, exits=exits)
    return control


def _accept(control: DraftController, way: int, rate: float, step_s: float, passes: int = 40):
    """Show the controller `passes` drafts of 4 at `way`, each token accepted at `rate`."""
    rng = np.random.default_rng(0)
    for _ in range(passes):
        kept = rng.random(4) < rate
        accepted = 4 if kept.all() else int(np.argmin(kept))  # up to the first rejection
        control.observe(4, accepted, verify_s=0.010 * 1.24, draft_s=4 * step_s, way=way)


def test_layer_drafting_picks_the_exit_and_length_with_the_most_tokens_per_second():
    control = _layer_controller([2, 4])
    _accept(control, 2, 0.85, step_s=0.002)  # the shallow exit: 3.5x cheaper per step
    _accept(control, 4, 0.90, step_s=0.007)
    plan = control.plan()
    assert plan.way == 2 and plan.length > 1
    dear = _layer_controller([2, 4])
    _accept(dear, 2, 0.85, step_s=0.011)     # draft steps dearer than a plain pass
    _accept(dear, 4, 0.90, step_s=0.011)
    assert dear.plan().length == 0           # never pays: drafting switches off


def test_a_drafter_that_mostly_finds_nothing_is_switched_off_like_one_that_is_wrong():
    control = DraftController(max_draft=8)
    control.observe_plain(0.01)
    assert control.plan().length > 0  # optimistic at first
    for _ in range(64):
        control.observe_empty()
    limits = [control.plan().length for _ in range(32)]
    assert limits.count(0) >= 32 - PROBE_ROUNDS * (32 // control.probe_every)  # off, probing


def test_a_drafters_start_up_is_not_counted_as_the_cost_of_its_tokens():
    """A draft model's first proposal in a call opens its session (its encoder run) and
    catches up on the output: that start-up stands in for the cost of drafted tokens only
    until a round without it measures them, and never moves that figure afterwards (the
    start-up round here follows a plain pass: a cold figure, which warm rounds replace)."""
    control = DraftController(max_draft=8)
    control.observe_plain(0.001)
    control.observe(2, 2, verify_s=0.0012, draft_s=0.010, setup_s=0.010)  # start-up alone
    assert control.cost(2) - control.verify_cost(2) == pytest.approx(0.010)
    for _ in range(PROBE_ROUNDS + 1):  # later rounds, in a row: 0.2 ms a token
        control.observe(4, 4, verify_s=0.0012, draft_s=0.0008)
    control.observe(2, 2, verify_s=0.0012, draft_s=0.010, setup_s=0.010)  # the next call's start
    per_token = (control.cost(4) - control.verify_cost(4)) / 4
    assert per_token == pytest.approx(0.0002)


def test_draft_steps_are_priced_as_drafting_that_is_on_runs_them_not_as_probes_after_plain_passes():
    """Rounds of drafts right after plain passes, a probe's rounds, run their draft steps
    cold (on JFLEG dev, exit 1 of the default package: 0.77 ms a step in a probe's first
    round, 0.44-0.50 ms in its second, against 0.34-0.39 ms while drafting ran): priced so,
    drafting that paid stayed off. Such rounds price steps only until a round that follows
    PROBE_ROUNDS rounds of drafts is timed, or when they find a step cheaper than that."""
    control = DraftController(max_draft=8)
    control.observe_plain(0.010)
    for _ in range(PROBE_ROUNDS):  # a probe: cold
        control.observe(4, 4, verify_s=0.0124, draft_s=4 * 0.008)
    assert (control.cost(4) - control.verify_cost(4)) / 4 == pytest.approx(0.008)
    control.observe(4, 4, verify_s=0.0124, draft_s=4 * 0.002)  # drafting on: warm
    control.observe_plain(0.010)
    for _ in range(PROBE_ROUNDS):  # cold again
        control.observe(4, 4, verify_s=0.0124, draft_s=4 * 0.009)
    assert (control.cost(4) - control.verify_cost(4)) / 4 == pytest.approx(0.002)
    control.observe_plain(0.010)
    for _ in range(20):  # probes find steps cheaper than the warm figure: it is stale
        control.observe(4, 4, verify_s=0.0124, draft_s=4 * 0.001)
        control.observe_plain(0.010)
    assert (control.cost(4) - control.verify_cost(4)) / 4 == pytest.approx(0.001, rel=0.05)


def test_a_probe_runs_its_rounds_back_to_back_so_its_last_prices_verify_rounds_warm():
    control = DraftController(max_draft=8)
    limits = _never_pays(control, 200)[20:]
    probes = [i for i, k in enumerate(limits) if k]
    assert probes and len(probes) % PROBE_ROUNDS == 0
    for first in probes[::PROBE_ROUNDS]:
        assert limits[first:first + PROBE_ROUNDS] == [PROBE_LENGTH] * PROBE_ROUNDS


def test_a_call_is_not_decoded_plainly_between_the_rounds_of_a_probe():
    control = DraftController(max_draft=8)
    _never_pays(control, 20)
    control.note_call(2)  # calls are short: the next probe is usually calls away
    while (k := control.plan().length) == 0:
        pass
    control.observe(k, 0, verify_s=0.01 * (1 + k), draft_s=0.01 * k)  # the call ends here
    assert not control.off_for_call()  # the next call runs the probe's second round
    assert control.plan().length == PROBE_LENGTH


def test_a_probe_whose_drafter_found_nothing_ends_there():
    """Nothing drafted, no draft step to time warm: the second round would only add a
    futile round (and back probes off sooner for a drafter that has nothing yet)."""
    control = DraftController(max_draft=8)
    _never_pays(control, 20)
    while control.plan().length == 0:
        pass
    control.observe_empty()
    assert control.plan().length == 0


def test_draft_steps_are_priced_in_plain_passes_of_their_time_so_speed_drift_cancels():
    """A shared machine's speed drifts: steps timed while it ran slowly, priced in seconds
    against plain passes timed once it ran fast, would make drafting look dearer than it
    is. A step is kept as a share of a plain pass of its time."""
    control = DraftController(max_draft=8)
    control.observe_plain(0.010)
    _accepted_rounds(control, 100, step_s=0.004)  # steps at 0.4 of a plain pass
    for _ in range(64):
        control.observe_plain(0.005)               # then everything twice as fast
    assert control.costs.base_s == pytest.approx(0.005)
    assert (control.cost(4) - control.verify_cost(4)) / 4 == pytest.approx(0.4 * 0.005, rel=0.02)


def test_a_round_of_drafts_right_after_plain_passes_does_not_price_verify_rounds():
    """A probe's first round runs cold, its verify pass as well as its draft steps: priced
    by such rounds, a round of drafts looked twice as dear while drafting was off as while
    it was on. Once a round that followed another is timed, cold rounds stay out of the
    cost line."""
    control = DraftController(max_draft=8)
    control.observe_plain(0.010)
    for _ in range(8):
        control.observe(4, 4, verify_s=0.012, draft_s=0.004)  # warm rounds, 12 ms
    for _ in range(4):
        control.observe_plain(0.010)
        control.observe(4, 4, verify_s=0.030, draft_s=0.004)  # cold, after a plain pass
        control.observe(4, 4, verify_s=0.012, draft_s=0.004)  # warm again
    assert control.verify_cost(4) == pytest.approx(0.012, rel=0.02)


def test_a_way_whose_figures_went_stale_while_off_is_probed_again():
    """Every other probe drafts by the way that drafted least recently, not only by the
    likeliest accepted: on JFLEG dev exit 1's figures, left from sentences the model
    rewrote, kept it off for the rest of a run while probes tried exit 2 alone."""
    control = _layer_controller([1, 2])
    _accept(control, 1, 0.30, step_s=0.004)  # cheap, but mostly wrong back then
    _accept(control, 2, 0.95, step_s=0.012)  # right, but dearer than a plain pass
    step_s = {1: 0.004, 2: 0.012}
    ways = []
    for _ in range(2000):  # now every draft of either way is accepted
        plan = control.plan()
        if plan.length:
            control.observe(plan.length, plan.length, verify_s=0.010 * 1.24,
                            draft_s=plan.length * step_s[plan.way], way=plan.way)
        else:
            control.observe_plain(0.010)
        ways.append(plan.way if plan.length else None)
    assert ways[-50:] == [1] * 50  # exit 1 drafts again


def test_one_stalled_round_does_not_switch_drafting_that_pays_off():
    """A timing far above the figures' prediction counts as STALL_RATIO times it: a stall
    of a shared machine once priced a draft step at 413 ms against 0.5 ms, and drafting
    accepted 99% of the time stayed off for the rest of the run."""
    control = DraftController(max_draft=8)
    control.observe_plain(0.010)
    assert _accepted_rounds(control, 100, step_s=0.003)[-20:] == [8] * 20
    control.observe(8, 8, verify_s=1.5, draft_s=8 * 0.5)  # the machine stalls for 5.5 s
    assert _accepted_rounds(control, 20, step_s=0.003) == [8] * 20  # still drafting
    assert control.summary()["ways"]["0"]["step_ms"] < 2 * 3.0


def test_a_stalled_probe_does_not_send_the_next_probe_thousands_of_passes_away():
    control = DraftController(max_draft=8, probe_every=8, max_probe_gap=128)
    _rejected_rounds(control, 1000, draft_s=0.002)  # off, probing every 128 passes
    while control.plan().length == 0:  # up to the next probe, whose first round stalls
        control.observe_plain(0.010)
    control.observe(PROBE_LENGTH, 0, verify_s=3.0, draft_s=0.002)
    gaps = []
    for _ in range(3000):
        _rejected_rounds(control, 1, draft_s=0.002)
        gaps.append(control.probe_gap)
    assert max(gaps) <= 2 * 128  # not doubling on to 2048 while the stall's cost decays


def test_a_real_slow_down_of_draft_steps_still_shows_within_a_few_rounds():
    steps = WayStats.empty(8)
    for _ in range(10):
        timed_step(steps, 0.1, warm=True)
    for _ in range(6):
        timed_step(steps, 1.0, warm=True)  # ten times dearer from now on
    assert steps.step_passes > 0.8


def test_a_call_whose_own_drafts_fail_drafts_shorter_at_once():
    """Acceptance varies by input (layer drafting on JFLEG's long sentences: 0.5-0.7
    against ~0.9 over all): a drafter that names no situation passes the call's own
    drafts, which the planner shrinks toward the way's figures. A call that has seen its
    drafts break after one token drafts short at once; one whose drafts went as the
    way's do drafts as the way does; the way's figures are not changed by either."""
    control = DraftController(max_draft=8)
    control.observe_plain(0.010)
    _accepted_rounds(control, 100, step_s=0.002)  # every draft accepted: drafting is on
    way_length = control.plan().length
    assert way_length == 8
    survival = control.survival().copy()
    failing, going_well = WayStats.empty(8), WayStats.empty(8)
    for _ in range(4):
        failing.add(8, 1)
        going_well.add(8, 8)
    assert control.plan(call={0: failing}).length < way_length / 2
    assert control.plan(call={0: going_well}).length == way_length
    assert control.plan(call={}).length == way_length  # nothing drafted yet in the call
    assert np.array_equal(control.survival(), survival)
    # a drafter that names its situations (input drafting) keeps its situations' lengths
    assert control.plan(situation=1, call={0: failing}).length == control.plan(situation=1).length
