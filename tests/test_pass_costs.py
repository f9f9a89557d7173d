"""The verify-pass cost line the draft planner prices rounds with (runtime/pass_costs.py)."""
from __future__ import annotations

import pytest

from edgeseq.runtime.pass_costs import WINDOW, PassCosts


def test_a_rounds_own_extra_is_not_folded_into_the_plain_pass_once_plain_passes_stop():
    """A round of drafts pays bookkeeping a plain pass does not. Measured while plain
    passes are timed beside rounds, that extra stays with the rounds once drafting runs
    without plain passes: folded into the line's intercept, it priced every plain pass
    dearer, and drafting that did not pay looked as if it did."""
    costs = PassCosts()
    seconds = lambda k: 0.010 * (1 + 0.1 * k) + 0.002  # noqa: E731  (base, beta, extra)
    for k in (0, 2, 0, 8) * 4:
        costs.add(k, 0.010 if k == 0 else seconds(k))
    costs.fit(settled=True)
    assert (costs.base_s, costs.beta, costs.round_extra_s) == \
        pytest.approx((0.010, 0.1, 0.002), rel=1e-6)
    for k in (2, 8) * WINDOW:  # rounds of drafts only: the plain passes leave the window
        costs.add(k, seconds(k))
    costs.fit(settled=True)
    assert (costs.base_s, costs.beta, costs.round_extra_s) == \
        pytest.approx((0.010, 0.1, 0.002), rel=1e-6)
    for k in (4,) * WINDOW:  # one draft length only: the level is met, the extra kept
        costs.add(k, seconds(k))
    costs.fit(settled=True)
    assert costs.base_s == pytest.approx(0.010, rel=1e-6)
    # never measured beside plain passes, rounds alone set the plain pass (extra 0)
    fresh = PassCosts()
    for k in (2, 8) * WINDOW:
        fresh.add(k, seconds(k))
    fresh.fit(settled=True)
    assert fresh.round_extra_s == 0.0 and fresh.base_s == pytest.approx(0.012, rel=1e-6)
