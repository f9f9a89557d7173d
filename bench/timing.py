"""One in-process timing loop for benchmarks that compare ways of doing the same work:
each way run once per round, the order turning round by round (so drift and warm caches
favour none), seconds kept per way."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def alternating_seconds(ways: dict[str, Callable[[], Any]],
                        rounds: int) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """(seconds of each round per way, each way's last result)."""
    names = list(ways)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    results: dict[str, Any] = {}
    for i in range(rounds):
        for name in (names if i % 2 == 0 else names[::-1]):
            began = time.perf_counter()
            results[name] = ways[name]()
            seconds[name].append(time.perf_counter() - began)
    return seconds, results
