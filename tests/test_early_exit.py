"""Lossy layer skipping: unified skipping, static exits and confidence early exit (CALM)
run the layers they claim, reduce to plain decoding at their limits, and never leave
stale K/V behind."""
from __future__ import annotations

import numpy as np
import pytest

import edgeseq
from edgeseq.errors import OptionsError
from edgeseq import names
from edgeseq.runtime.decoder import LayerPlan, run_session
from edgeseq.runtime.early_exit import unified_skip_plan

SOURCES = [[5, 9, 13, 22, 40, 7, 2], [11, 60, 61, 62, 63, 64, 65, 66, 67, 2]]


@pytest.fixture(scope="module")
def engine(tiny_package):
    return edgeseq.load(str(tiny_package("t5v11", "fp32")[0]), threads=1)


@pytest.mark.parametrize("layers, ratio, kept", [
    (6, 1.0, [0, 1, 2, 3, 4, 5]), (6, 2.0, [0, 2, 5]), (6, 1.5, [0, 2, 3, 5]),
    (8, 2.0, [0, 2, 5, 7]), (12, 3.0, [0, 4, 7, 11]), (4, 10.0, [0])])
def test_unified_skipping_keeps_first_last_and_a_balanced_middle(layers, ratio, kept):
    plan = unified_skip_plan(layers, ratio)
    assert [i for i, r in enumerate(plan.run) if r] == kept


def test_limits_reduce_to_plain_greedy(engine):
    layers = engine.arch.decoder_layers
    for ids in SOURCES:
        plain = engine.generate(ids, max_new_tokens=12, min_new_tokens=12)
        for kw in (dict(skip_ratio=1.0), dict(exit_after=layers), dict(exit_threshold=1.0)):
            out = engine.generate(ids, max_new_tokens=12, min_new_tokens=12, **kw)
            assert out.token_ids == plain.token_ids, kw
            assert out.stats.layers_per_token == pytest.approx(layers)


def test_skipping_runs_fewer_layers_and_reports_them(engine):
    layers = engine.arch.decoder_layers
    out = engine.generate(SOURCES[0], max_new_tokens=10, min_new_tokens=10, exit_after=1)
    assert out.stats.layers_per_token == pytest.approx(1.0)
    calm = engine.generate(SOURCES[0], max_new_tokens=10, min_new_tokens=10,
                           exit_threshold=0.05, exit_layers=(1, 2))
    assert 1.0 <= calm.stats.layers_per_token < layers


def test_confident_exit_fills_skipped_layers_from_the_exit_hidden_state(engine):
    """State propagation: K/V of layers above the exit equal the projection of the exit
    hidden state — the same values a continuation pass with those layers as 'fill' gives."""
    runner, layers = engine.runner, engine.arch.decoder_layers
    ids = np.array([SOURCES[0]])
    state = runner.encode(ids, np.ones_like(ids))
    cache = runner.new_cache(1, 4)
    cache.buffer[:] = 7.0  # stale garbage that must not survive
    runner.step_hidden(np.array([[0]]), state, cache, LayerPlan.span(0, 1, layers, fill_after=True))
    for layer in range(1, layers):
        keys, _ = cache.past(layer)
        assert not np.any(keys == 7.0)
    # a later token attends to those entries and still decodes without NaNs
    logits = runner.step(np.array([[5]]), state, cache)
    assert np.isfinite(logits).all()


def test_continuing_from_an_exit_equals_the_full_pass(engine):
    runner, layers = engine.runner, engine.arch.decoder_layers
    ids = np.array([SOURCES[1]])
    state = runner.encode(ids, np.ones_like(ids))
    full = runner.step(np.array([[0, 7, 9]]), state, runner.new_cache(1, 3))
    cache = runner.new_cache(1, 3)
    _, hidden = runner.step_hidden(np.array([[0, 7, 9]]), state, cache, LayerPlan.span(0, 1, layers, True))
    cache.truncate(0)
    cont, _ = runner.step_hidden(np.array([[0, 7, 9]]), state, cache,
                                 LayerPlan.span(1, layers, layers, False), hidden)
    np.testing.assert_array_equal(cont, full)


@pytest.mark.parametrize("kw, name", [
    (dict(skip_ratio=0.5), "skip_ratio"), (dict(exit_after=0), "exit_after"),
    (dict(exit_threshold=1.5), "exit_threshold"), (dict(skip_ratio=2, exit_after=1), "one layer-skipping"),
    (dict(skip_ratio=2, draft="input"), "lossless"), (dict(exit_threshold=0.5, num_beams=2), "beam"),
    (dict(exit_measure="entropy", exit_threshold=0.5), "exit_measure"), (dict(exit_after=99), "exit_after")])
def test_bad_skip_options_are_named(engine, kw, name):
    with pytest.raises(OptionsError, match=name):
        engine.generate(SOURCES[0], max_new_tokens=3, **kw)


def test_unified_skipping_works_with_beam_search_and_batches(engine):
    """A batch decodes as its rows one by one, through fewer layers than the full model."""
    kw = dict(max_new_tokens=8, num_beams=2, skip_ratio=2.0)
    outs = engine.generate(SOURCES, **kw)
    assert [o.token_ids for o in outs] == [engine.generate(s, **kw).token_ids for s in SOURCES]
    assert all(o.token_ids for o in outs)
    assert all(o.stats.layers_per_pass < engine.arch.decoder_layers for o in outs)


def test_a_pass_through_the_first_layers_reads_no_other_layer_cache(engine):
    """Skipped layers are fed an empty past (nothing copied for them): the logits equal a
    pass that is given every layer's cache."""
    runner, layers = engine.runner, engine.arch.decoder_layers
    ids = np.array([SOURCES[1]])
    state = runner.encode(ids, np.ones_like(ids))
    cache = runner.new_cache(1, 12)
    runner.step(np.array([[0, 7, 9, 11, 13]]), state, cache)
    plan, token = LayerPlan.first(1, layers), np.array([[17]])
    logits = runner.step(token, state, cache, plan)
    cache.truncate(5)
    feeds = dict(state.feeds)
    feeds[names.DEC_LAYER_RUN], feeds[names.DEC_LAYER_FILL] = plan.feeds
    feeds[names.DEC_INPUT_IDS], feeds[names.DEC_PAST_LENGTH] = token, np.array(5, np.int64)
    for layer in range(layers):
        keys, values = cache.past(layer)
        feeds[names.past_key(layer)] = np.ascontiguousarray(keys)
        feeds[names.past_value(layer)] = np.ascontiguousarray(values)
    given_all = run_session(runner.decoder, [names.DEC_LOGITS], feeds)[0]
    np.testing.assert_array_equal(logits, given_all)
