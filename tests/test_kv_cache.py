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
        for layer in range(2):
            cache.append(layer, rng.standard_normal((2, 3, 1, 4)), rng.standard_normal((2, 3, 1, 4)))
        cache.advance(1)
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
    cache.append(0, new, new)
    cache.advance(1)
    keys = cache.past_contiguous()[0, 0]
    assert keys.shape[2] == 3 and (keys[:, :, 2] == 7.0).all()


def test_writing_past_the_capacity_is_an_error_not_a_silent_overflow():
    cache = _filled(8)
    with pytest.raises(IndexError, match="KV cache full"):
        cache.append(0, np.zeros((2, 3, 1, 4)), np.zeros((2, 3, 1, 4)))
