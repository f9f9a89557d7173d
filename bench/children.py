"""Measurements that need a process each (onnxruntime's shared thread pool is process-wide):
run `python -m MODULE ... --child SETUP` for every setup, round by round, so drift on a
shared machine hits every setup alike, and collect the JSON line each child prints last."""
from __future__ import annotations

import json
import subprocess
import sys
from typing import Callable


def alternate(module: str, args: Callable[[str], list[str]], setups: list[str],
              rounds: int) -> dict[str, list[dict]]:
    """{setup: [one child's result per round]}; `args(setup)` is the child's command line
    after `python -m module`."""
    results: dict[str, list[dict]] = {s: [] for s in setups}
    for r in range(rounds):
        for setup in setups:
            out = subprocess.run([sys.executable, "-m", module, *args(setup)],
                                 capture_output=True, text=True, check=True)
            results[setup].append(json.loads(out.stdout.strip().splitlines()[-1]))
            shown = {k: v for k, v in results[setup][-1].items() if not isinstance(v, (list, dict))}
            print(f"[{r + 1}/{rounds}] {setup}: {shown}", flush=True)
    return results
