"""One in-process timing loop for benchmarks that compare ways of doing the same work:
each way run once per round, the order turning round by round (so drift and warm caches
favour none), seconds kept per way; and the turning order itself, for benchmarks that run
their configurations over many inputs."""
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


def alternating_decodes(engines: dict[str, Any], configs: dict[str, Any], inputs: list,
                        rounds: int, max_new_tokens: int, warmup: int = 20
                        ) -> tuple[dict[str, list[float]], dict[str, list[list[int]]]]:
    """Each engine decoding `inputs` with each drafter of `configs` (name -> draft=), as
    ways named "engine/config" run by alternating_seconds after a warm-up on the first
    `warmup` inputs (onnxruntime allocates for new shapes): (seconds per round, token ids
    per input) per way."""
    def decode(engine, draft, items):
        return [engine.generate(item, max_new_tokens=max_new_tokens, draft=draft).token_ids
                for item in items]
    ways = {f"{name}/{config}": (lambda e=engine, d=draft: decode(e, d, inputs))
            for name, engine in engines.items() for config, draft in configs.items()}
    for engine in engines.values():
        for draft in configs.values():
            decode(engine, draft, inputs[:warmup])
    return alternating_seconds(ways, rounds)


def turn_order(configs: list, rep: int, unit: int = 0) -> list:
    """The configurations in the order they run one unit (an input, a chunk of inputs, a
    clip) in one repeat: the first turns with the repeat and the unit, so over
    len(configs) repeats each unit is run by every configuration in every position.
    (Turned by rep * units + unit, with two configurations and two Whisper clips, the
    first clip always ran plain greedy first and the second always second, so whatever
    running first costs fell on one side per clip: Whisper base's untrained row read 0.96x
    [0.94-1.01] paired in two runs whose decoder time was plain's.)"""
    turn = (rep + unit) % len(configs)
    return configs[turn:] + configs[:turn]
