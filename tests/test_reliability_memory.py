"""memory_budget_mb holds in practice: a generation's resident memory growth stays inside
what the budget leaves after the weights and the stated interpreter allowance
(RUNTIME_ALLOWANCE), measured in a fresh process; an input that cannot fit is refused
before any work."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import edgeseq
from edgeseq.errors import MemoryBudgetError
from edgeseq.runtime.memory import MB, RUNTIME_ALLOWANCE, Request

# Allocator granularity on top of the plan's bytes: onnxruntime's arena and numpy take
# memory in chunks and pages, so a few hundred KB beyond the prediction is rounding.
SLACK = 1 * MB

MEASURE = r"""
import json, os, sys
import edgeseq

def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

engine = edgeseq.load(sys.argv[1], threads=1)
engine.generate([[5, 6, 7]], max_new_tokens=2)  # first-call allocations are the runtime's
draft_model = edgeseq.load(sys.argv[1], threads=1)  # "model": a draft package of its own
draft_model.generate([[5, 6, 7]], max_new_tokens=2)
rows = [[5, 6, 7, 8] * 10] * 32
out = []
for budget, draft in json.loads(sys.argv[2]):
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak (VmHWM) restarts from the current RSS
    base = rss()
    result = engine.generate(rows, max_new_tokens=40, memory_budget_mb=budget,
                             draft=draft_model if draft == "model" else draft)
    out.append({"budget": budget, "base": base, "peak": peak(),
                "plan": result[0].stats.memory_plan})
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def package(tiny_package):
    return tiny_package("bart", "int8")[0]


def test_generation_growth_stays_inside_the_budget(package):
    try:
        open("/proc/self/clear_refs", "w").close()
    except OSError:
        pytest.skip("this kernel does not let a process reset its peak RSS")
    engine = edgeseq.load(str(package))
    floor = engine.memory_plan(10_000, Request(1, 40, 1, 0)).estimate.total
    budgets = [(floor / MB + extra, draft) for extra, draft in
               ((0.5, None), (2.0, None), (4.0, "input"), (50.0, "input"), (6.0, "model"),
                (50.0, "model"))]
    done = subprocess.run([sys.executable, "-c", MEASURE, str(package), json.dumps(budgets)],
                          capture_output=True, text=True, timeout=120, check=True)
    runs = json.loads(done.stdout.strip().splitlines()[-1])
    for run in runs:
        predicted = run["plan"]["predicted"]
        assert predicted["total"] <= run["budget"] * MB
        # what the budget leaves for this generation once weights and the interpreter
        # allowance are paid for
        room = run["budget"] * MB - predicted["weights"] - RUNTIME_ALLOWANCE
        growth = run["peak"] - run["base"]
        assert growth <= room + SLACK, (run["budget"], growth / MB, room / MB)
    assert any(run["plan"]["reduced"] for run in runs)  # the tight budgets cut the batch


def test_an_input_that_cannot_fit_is_refused_before_any_work(package, monkeypatch):
    engine = edgeseq.load(str(package), threads=1)
    calls = []
    monkeypatch.setattr(engine.runner, "encode", lambda *a: calls.append("encode"))
    monkeypatch.setattr(engine.runner, "step", lambda *a, **k: calls.append("step"))
    with pytest.raises(MemoryBudgetError, match=r"budget of 60 MB is below the \d+ MB that "
                                                r"plain decoding of one 60-token input needs"):
        engine.generate([[5] * 59 + [2]] * 4, max_new_tokens=8, memory_budget_mb=60)
    assert calls == []
