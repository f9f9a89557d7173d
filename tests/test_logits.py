"""Score rules: the fast greedy choice (raw argmax unless a rule touches it) equals
applying every rule and taking the argmax; the n-gram index agrees with the walk."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeseq.runtime.logits import NgramHistory, ScoreRules, repeated_ngram_tokens

VOCAB = 6  # a small vocabulary makes repeats and banned argmaxes common


@settings(max_examples=300, deadline=None)
@given(seq=st.lists(st.integers(0, VOCAB - 1), min_size=1, max_size=20), n=st.integers(1, 4),
       token=st.integers(0, VOCAB - 1))
def test_the_ngram_index_bans_what_the_walk_bans(seq, n, token):
    history = NgramHistory([seq[:1]], n)
    for t in seq[1:]:
        history.append(0, t)
    assert history.completes_repeat(0, token) == (token in repeated_ngram_tokens(seq, n))


@settings(max_examples=300, deadline=None)
@given(seqs=st.lists(st.lists(st.integers(0, VOCAB - 1), min_size=1, max_size=12), min_size=1, max_size=3),
       n=st.integers(0, 3), generated=st.integers(0, 6), min_new=st.integers(0, 4),
       suppress=st.lists(st.integers(0, VOCAB - 1), max_size=2), forced=st.booleans(),
       seed=st.integers(0, 2**16))
def test_choose_equals_every_rule_then_argmax(seqs, n, generated, min_new, suppress, forced, seed):
    rules = ScoreRules(eos=1, min_new_tokens=min_new, max_new_tokens=8, suppress=tuple(suppress),
                       forced_bos=3 if forced else None, forced_eos=1 if forced else None,
                       no_repeat_ngram=n)
    logits = np.random.default_rng(seed).standard_normal((len(seqs), VOCAB)).astype(np.float32)
    history = NgramHistory(seqs, n) if n else None
    expected = rules.apply(logits.copy(), generated, [list(s) for s in seqs] if n else None).argmax(-1)
    assert rules.choose(logits, generated, history).tolist() == expected.tolist()
    top = int(logits[0].argmax())  # one row's check, as batch-1 verification uses it
    one = NgramHistory(seqs[:1], n) if n else None
    if not (rules.forces_or_bans(top, generated) or (one is not None and one.completes_repeat(0, top))):
        assert int(rules.apply(logits[:1].copy(), generated, seqs[:1] if n else None).argmax()) == top


@given(start=st.lists(st.integers(0, VOCAB - 1), min_size=1, max_size=8),
       appended=st.lists(st.lists(st.integers(0, VOCAB - 1), max_size=6), max_size=4),
       n=st.integers(1, 4), token=st.integers(0, VOCAB - 1))
@settings(max_examples=200, deadline=None)
def test_a_shared_history_indexes_what_its_owner_appended_on_sync(start, appended, n, token):
    output = [list(start)]
    history = NgramHistory(output, n, share=True)
    for tokens in appended:  # the owner extends its lists; the history catches up on sync
        output[0].extend(tokens)
        history.sync()
        history.append(0, token)
    fresh = NgramHistory([list(output[0])], n)
    assert history.completes_repeat(0, token) == fresh.completes_repeat(0, token)
    assert history._seen == fresh._seen
