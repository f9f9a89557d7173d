"""The decoder's self-attention cache: preallocated once for the maximum length, written
at a cursor (`write`). Rejected draft tokens are rolled back by moving the cursor (`truncate`);
nothing is reallocated per step.

onnxruntime reads only contiguous inputs, and the cached prefix [batch, heads, :length]
of the preallocated buffer is strided, so each step copies it into a staging buffer that
is also allocated once. Copying into fresh arrays instead (np.ascontiguousarray) cost
5.3 ms per step at 496 cached tokens on t5-small, against 1.2 ms into the reused
buffer (fresh pages fault in on every step); bench/scaling.py shows the per-token cost."""
from __future__ import annotations

import numpy as np


class KVCache:
    def __init__(self, layers: int, batch: int, heads: int, max_length: int, head_dim: int):
        # [layer, key|value, batch, heads, position, head_dim]
        self.buffer = np.zeros((layers, 2, batch, heads, max_length, head_dim), np.float32)
        # untouched pages of np.empty cost no memory until a long generation reaches them
        self._staging = np.empty((layers, 2, batch * heads * max_length * head_dim), np.float32)
        self.length = 0

    @property
    def capacity(self) -> int:
        return self.buffer.shape[4]

    @property
    def batch(self) -> int:
        return self.buffer.shape[2]

    @property
    def nbytes(self) -> int:
        return self.buffer.nbytes + self._staging.nbytes

    def past(self, layer: int) -> tuple[np.ndarray, np.ndarray]:
        """Keys and values of the cached positions [batch, heads, length, head_dim]."""
        return self.buffer[layer, 0, :, :, :self.length], self.buffer[layer, 1, :, :, :self.length]

    def past_contiguous(self, layers: tuple[int, ...] | None = None) -> np.ndarray:
        """Contiguous copies of the cached prefix, [layers, 2, batch, heads, length,
        head_dim] in the staging buffer (each [layer, k] is itself contiguous), valid until
        the next call. `layers`: copy only these (a pass that skips layers never reads
        theirs; the entries of the others are left as they were)."""
        n_layers, _, batch, heads, _, head_dim = self.buffer.shape
        size = batch * heads * self.length * head_dim
        staged = self._staging[:, :, :size].reshape(n_layers, 2, batch, heads, self.length, head_dim)
        if layers is None:  # one copy for all layers
            np.copyto(staged, self.buffer[:, :, :, :, :self.length])
        elif layers == tuple(range(len(layers))):  # the first layers (an early exit): one copy
            np.copyto(staged[:len(layers)], self.buffer[:len(layers), :, :, :, :self.length])
        else:
            for i in layers:
                np.copyto(staged[i], self.buffer[i, :, :, :, :self.length])
        return staged

    def write(self, layers: tuple[int, ...], present: list[np.ndarray], first: int = 0) -> None:
        """A pass's K/V for `layers` after the cursor, and advance the cursor: layer i's
        keys are present[first + 2i], its values the next ([batch, heads, n, head_dim])."""
        n = present[first].shape[2]
        begin, end = self.length, self.length + n
        if end > self.capacity:
            raise IndexError(f"KV cache full: {begin} + {n} > {self.capacity}")
        buffer = self.buffer
        for i in layers:
            buffer[i, 0, :, :, begin:end] = present[first + 2 * i]
            buffer[i, 1, :, :, begin:end] = present[first + 2 * i + 1]
        self.length = end

    def truncate(self, length: int) -> None:
        """Roll back to `length` cached positions (e.g. after rejected draft tokens)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot truncate a cache of {self.length} to {length}")
        self.length = length

    def reorder(self, rows: np.ndarray) -> None:
        """Beam search: row i takes the cache of row rows[i] (cached prefix only)."""
        live = self.buffer[:, :, :, :, :self.length]
        live[...] = live[:, :, rows]
