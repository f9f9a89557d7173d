"""The decoder's KV cache: preallocated once, written at a cursor, rolled back by moving
the cursor, and handed to onnxruntime as contiguous arrays without allocating per step."""
from __future__ import annotations

import numpy as np
import pytest

from edgeseq.runtime.kv_cache import KVCache


def _filled(length: int) -> KVCache:
    cache = KVCache(layers=2, batch=2, heads=3, max_length=8, head_dim=4)
    rng = np.random.default_rng(0)
    for _ in range(length):
        cache.write((0, 1), [rng.standard_normal((2, 3, 1, 4)) for _ in range(4)])
    return cache


def test_contiguous_past_equals_the_cached_prefix_and_reuses_one_buffer():
    cache = _filled(5)
    staged = cache.past_contiguous()
    keys, values = staged[1, 0], staged[1, 1]
    want_keys, want_values = cache.past(1)
    assert keys.flags.c_contiguous and values.flags.c_contiguous
    np.testing.assert_array_equal(keys, want_keys)
    np.testing.assert_array_equal(values, want_values)
    cache.truncate(3)
    again = cache.past_contiguous()[1, 0]
    assert again.shape == (2, 3, 3, 4) and np.shares_memory(again, keys)  # no new allocation
    np.testing.assert_array_equal(again, cache.past(1)[0])


def test_rolling_back_then_writing_overwrites_the_rejected_positions():
    cache = _filled(5)
    cache.truncate(2)
    new = np.full((2, 3, 1, 4), 7.0)
    cache.write((0,), [new, new])
    keys = cache.past_contiguous()[0, 0]
    assert keys.shape[2] == 3 and (keys[:, :, 2] == 7.0).all()


def test_writing_past_the_capacity_is_an_error_not_a_silent_overflow():
    cache = _filled(8)
    with pytest.raises(IndexError, match="KV cache full"):
        cache.write((0,), [np.zeros((2, 3, 1, 4))] * 2)
    assert cache.length == 8  # nothing written, the cursor unmoved


def test_a_pass_writes_only_the_layers_it_ran_and_moves_the_cursor_once():
    cache = KVCache(layers=3, batch=1, heads=1, max_length=4, head_dim=2)
    present = [np.full((1, 1, 2, 2), float(i)) for i in range(6)]  # k0 v0 k1 v1 k2 v2
    cache.write((0, 2), present)
    assert cache.length == 2
    assert (cache.past(0)[0] == 0).all() and (cache.past(0)[1] == 1).all()
    assert (cache.past(1)[0] == 0).all() and (cache.past(1)[1] == 0).all()  # not run: untouched
    assert (cache.past(2)[0] == 4).all() and (cache.past(2)[1] == 5).all()


@pytest.mark.parametrize("layers", [(0,), (1,), (0, 1)])
def test_a_pass_through_some_layers_copies_only_their_cache(layers):
    cache = _filled(5)
    staged = cache.past_contiguous()
    staged[:] = -1.0  # what an earlier pass left in the staging buffer
    staged = cache.past_contiguous(layers)
    for layer in range(2):
        keys, values = cache.past(layer)
        if layer in layers:
            np.testing.assert_array_equal(staged[layer, 0], keys)
            np.testing.assert_array_equal(staged[layer, 1], values)
        else:  # not copied: a skipped layer never reads it
            assert (staged[layer] == -1.0).all()
