"""Loaded engines shared by every request: one per (model id, threads), loaded once even
when requests for it arrive together. At most `capacity` engines are in memory at once,
counting the ones requests still use: a new one replaces the least recently used idle
engine, and waits while every engine is busy (a small device cannot hold one model per
thread count that parallel requests ask for)."""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from typing import Callable, Iterator

import edgeseq
from edgeseq.runtime.engine import Engine

from .catalog import ModelEntry
from .errors import ServiceBusy

Key = tuple[str, int]
BUSY_WAIT_S = 120.0  # how long a request waits for a busy engine to come free


def load_engine(entry: ModelEntry, threads: int) -> Engine:
    return edgeseq.load(entry.source, provider="cpu", threads=threads)


class EngineCache:
    def __init__(self, load: Callable[[ModelEntry, int], Engine] = load_engine,
                 capacity: int = 2, busy_wait_s: float = BUSY_WAIT_S):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._load, self.capacity, self.busy_wait_s = load, capacity, busy_wait_s
        self._engines: OrderedDict[Key, Engine] = OrderedDict()  # least recently used first
        self._users: dict[Key, int] = {}  # requests holding each engine now
        self._loading: set[Key] = set()   # loads in progress: they count toward capacity
        self._changed = threading.Condition()
        self.loads = 0  # engines loaded so far (a figure, and what tests check)

    @contextmanager
    def lease(self, entry: ModelEntry, threads: int) -> Iterator[Engine]:
        """The engine for `entry` at `threads`, kept in memory until the block ends.
        Raises ServiceBusy when no engine came free within busy_wait_s."""
        key = (entry.id, threads)
        engine = self._acquire(entry, key)
        try:
            yield engine
        finally:
            with self._changed:
                self._users[key] -= 1
                if not self._users[key]:
                    del self._users[key]
                self._changed.notify_all()

    def _acquire(self, entry: ModelEntry, key: Key) -> Engine:
        with self._changed:
            if not self._wait_for_room(key):
                engine = self._engines[key]
                self._engines.move_to_end(key)
                self._users[key] = self._users.get(key, 0) + 1
                return engine
            self._loading.add(key)
        try:  # outside the lock: other models keep serving meanwhile
            engine = self._load(entry, key[1])
        except BaseException:
            with self._changed:
                self._loading.discard(key)
                self._changed.notify_all()
            raise
        with self._changed:
            self._loading.discard(key)
            self._engines[key] = engine
            self._users[key] = self._users.get(key, 0) + 1
            self.loads += 1
            self._changed.notify_all()
        return engine

    def _wait_for_room(self, key: Key) -> bool:
        """Under the lock: False when `key` is loaded; True when this caller should load
        it, an idle engine evicted first if the cache is full."""
        deadline = time.monotonic() + self.busy_wait_s
        while True:
            if key in self._engines:
                return False
            if key not in self._loading:  # else another request is loading it: wait
                if len(self._engines) + len(self._loading) < self.capacity:
                    return True
                idle = next((k for k in self._engines if k not in self._users), None)
                if idle is not None:
                    del self._engines[idle]
                    return True
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServiceBusy(
                    f"every loaded model is busy ({sum(self._users.values())} requests, at "
                    f"most {self.capacity} models in memory); try again when one finishes, "
                    "or use a thread count that a loaded model already has")
            self._changed.wait(left)

    def keys(self) -> list[Key]:
        """The engines in memory, least recently used first."""
        with self._changed:
            return list(self._engines)

    def in_use(self) -> dict[Key, int]:
        """How many requests hold each engine now."""
        with self._changed:
            return dict(self._users)
