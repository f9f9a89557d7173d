"""Which execution provider ran each operator of a package's graphs. A provider takes
the operators it supports and leaves the rest to the CPU; session.get_providers() lists
providers, not that split. onnxruntime's profiler records it per operator: one encoder
run and one decoder pass through profiled copies of the engine's sessions (same graphs,
providers and options) give it, for `edgeseq info --placement`."""
from __future__ import annotations

import copy
import json
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from .decoder import open_sessions

# graph -> operator type -> provider -> operators
Placement = dict[str, dict[str, dict[str, int]]]


def operator_placement(engine) -> Placement:
    runner, config = engine.runner, engine.config
    with tempfile.TemporaryDirectory(prefix="edgeseq-placement-") as tmp:
        profiled = copy.copy(runner)  # the engine's own sessions stay as they are
        sessions = open_sessions(engine.directory, config, engine.manifest, profile=Path(tmp))
        profiled.encoder, profiled.decoder = sessions.encoder, sessions.decoder
        _one_pass(profiled, engine)
        return {name: _count(Path(getattr(profiled, name).end_profiling()))
                for name in ("encoder", "decoder")}


def _one_pass(runner, engine) -> None:
    arch, special = engine.arch, engine.manifest.special
    if arch.num_mel_bins:  # Whisper: 30 s of silence
        frames = 2 * arch.max_source_positions
        state = runner.encode_features(np.zeros((1, arch.num_mel_bins, frames), np.float32))
    else:
        ids = np.array([[special.eos]], np.int64)
        state = runner.encode(ids, np.ones_like(ids))
    start = np.array([[special.decoder_start]], np.int64)
    runner.step(start, state, runner.new_cache(1, 2))


def _count(trace_file: Path) -> dict[str, dict[str, int]]:
    counts: dict[str, Counter] = defaultdict(Counter)
    for event in json.loads(trace_file.read_text()):
        args = event.get("args", {})
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time") \
                and "provider" in args:
            counts[args.get("op_name", "?")][args["provider"]] += 1
    return {op: dict(c) for op, c in sorted(counts.items())}


def summary(graph: str, ops: dict[str, dict[str, int]]) -> str:
    """One line: operators per provider, and which operator types another provider than
    the first one takes (CPU fallbacks on an accelerator)."""
    by_provider: Counter = Counter()
    for providers in ops.values():
        by_provider.update(providers)
    main = by_provider.most_common(1)[0][0] if by_provider else "none"
    line = f"{graph}: " + ", ".join(f"{n} on {p}" for p, n in by_provider.most_common())
    others = sorted({f"{op} ({p})" for op, providers in ops.items() for p in providers if p != main})
    return line + (f"; not on {main}: {', '.join(others)}" if others else "")
