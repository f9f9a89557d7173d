"""`edgeseq bench`: which command each suite runs, with a device profile's threads and
memory budget passed on (the suites themselves are benchmarks, not run here)."""
from __future__ import annotations

import argparse
from pathlib import Path

from bench import suite


def _args(**kw) -> argparse.Namespace:
    base = dict(out=Path("/tmp/results"), threads=4, package="default", quick=False, memory_budget=1500.0)
    return argparse.Namespace(**{**base, **kw})


def test_every_suite_runs_its_benchmark_module_with_the_threads_and_output_folder():
    cmds = suite.commands(_args())
    assert set(suite.SUITES) <= set(cmds)
    for name, runs in cmds.items():
        first = runs[0]
        assert first[1:3] == ["-m", f"bench.{name}"]
        assert str(Path("/tmp/results") / name) in first
        if name != "scaling":
            assert first[first.index("--threads") + 1] == "4"


def test_the_memory_budget_of_a_profile_reaches_the_speculative_suite():
    spec = suite.commands(_args())["speculative"][0]
    assert spec[spec.index("--memory-budget") + 1] == "1500.0"
    assert "--memory-budget" not in suite.commands(_args(memory_budget=None))["speculative"][0]
    specmemo = [c for c in suite.commands(_args())["speculative"] if "bench.specmemo" in c][0]
    assert specmemo[specmemo.index("--budget") + 1] == "1500.0"
    assert not any("bench.specmemo" in c for c in suite.commands(_args(memory_budget=None))["speculative"])
