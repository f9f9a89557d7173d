"""Loaded engines shared by every request: one per (model id, threads), loaded once even
when requests for it arrive together, the least recently used dropped beyond capacity."""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable

import edgeseq
from edgeseq.runtime.engine import Engine

from .catalog import ModelEntry

Key = tuple[str, int]


def load_engine(entry: ModelEntry, threads: int) -> Engine:
    return edgeseq.load(entry.source, provider="cpu", threads=threads)


class EngineCache:
    def __init__(self, load: Callable[[ModelEntry, int], Engine] = load_engine,
                 capacity: int = 2):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._load, self.capacity = load, capacity
        self._engines: OrderedDict[Key, Engine] = OrderedDict()
        self._loading: dict[Key, threading.Lock] = {}
        self._lock = threading.Lock()
        self.loads = 0  # engines loaded so far (a figure, and what tests check)

    def get(self, entry: ModelEntry, threads: int) -> Engine:
        key = (entry.id, threads)
        with self._lock:
            engine = self._cached(key)
            if engine is not None:
                return engine
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:  # one load per key; other models keep serving meanwhile
            with self._lock:
                engine = self._cached(key)
            if engine is not None:
                return engine
            try:
                engine = self._load(entry, threads)
                with self._lock:
                    self.loads += 1
                    self._engines[key] = engine
                    while len(self._engines) > self.capacity:
                        self._engines.popitem(last=False)  # requests using it keep it alive
            finally:
                with self._lock:
                    self._loading.pop(key, None)
        return engine

    def _cached(self, key: Key) -> Engine | None:
        engine = self._engines.get(key)
        if engine is not None:
            self._engines.move_to_end(key)
        return engine

    def keys(self) -> list[Key]:
        with self._lock:
            return list(self._engines)
