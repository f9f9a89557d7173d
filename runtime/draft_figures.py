"""What drafting has measured, kept by an engine across calls: a draft controller and a
batch schedule per drafter, drafting options and batch size. A caller's drafter object or
draft engine is told apart by identity while it lives. Its id() alone is not enough: once
the object is freed, a later one may get the same id and inherit figures it never earned
(a test's always-right drafter took over an always-wrong one's switched-off controller)."""
from __future__ import annotations

import threading
import weakref
from typing import Callable, TypeVar

from .options import GenerationOptions, is_engine

T = TypeVar("T")


class DraftFigures:
    def __init__(self) -> None:
        self._kept: dict[tuple, object] = {}   # (what, key) -> a controller or a schedule
        self._objects: dict[int, weakref.ref] = {}  # id -> the drafter object seen there
        # ids of drafter objects freed since: a weakref callback only appends (it may run
        # in any thread, even one inside get()), the next get() forgets their figures
        self._freed: list[int] = []
        self._lock = threading.Lock()

    def get(self, what: str, opts: GenerationOptions, batch: int, make: Callable[[], T]) -> T:
        """The kept `what` ("controller", "schedule") for these options and batch size,
        made on first use; a fresh one, not kept, for a drafter object that cannot be
        weakly referenced (its identity cannot be followed)."""
        with self._lock:
            key = self._key(opts, batch)
            if key is None:
                return make()
            if (what, key) not in self._kept:
                self._kept[what, key] = make()
            return self._kept[what, key]

    def _key(self, opts: GenerationOptions, batch: int) -> tuple | None:
        while self._freed:
            gone = self._freed.pop()
            if gone in self._objects and self._objects[gone]() is None:
                del self._objects[gone]
                self._forget(gone)
        draft = opts.draft
        if isinstance(draft, str):
            return draft, opts.max_draft, opts.exit_layer, opts.draft_skip, batch
        object_id = id(draft)
        seen = self._objects.get(object_id)
        if seen is None or seen() is not draft:  # new here, or a freed object's id
            try:
                self._objects[object_id] = weakref.ref(
                    draft, lambda _, freed=object_id: self._freed.append(freed))
            except TypeError:
                return None
            self._forget(object_id)
        kind = ("model" if is_engine(draft) else "drafter", object_id)
        return kind, opts.max_draft, opts.exit_layer, opts.draft_skip, batch

    def _forget(self, object_id: int) -> None:
        """Drop the figures of the drafter object that had this id."""
        self._kept = {k: v for k, v in self._kept.items()
                      if not (isinstance(k[1][0], tuple) and k[1][0][1] == object_id)}
