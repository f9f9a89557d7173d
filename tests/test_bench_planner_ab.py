"""bench.planner_ab: settings of the draft planner against each other and plain greedy.
Run in a child process: its engines share onnxruntime's process-wide thread pool, which
would outlive the test in this one."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _planner_ab(package: Path, out: Path, *arms: str) -> tuple[str, dict]:
    """bench.planner_ab on 6 inputs of ids, 2 rounds, with `arms` (its options that choose
    the planners compared): what it printed and its report."""
    run = subprocess.run(
        [sys.executable, "-m", "bench.planner_ab", str(package), "--data", "ids", "--limit", "6",
         "--rounds", "2", "--max-new-tokens", "8", "--threads", "1", *arms, "--out", str(out)],
        capture_output=True, text=True, cwd=REPO, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout, json.loads((out / "planner_ab.json").read_text())


def test_each_setting_drafts_with_its_own_planner_and_is_reported_against_plain_and_the_first(
        tiny_package, tmp_path):
    stdout, report = _planner_ab(tiny_package("t5", "fp32")[0], tmp_path, "--stay-on", "1.08,1.0")
    assert "stay on down to 1.00" in stdout
    # each engine's planner kept its own setting, and drafted with it
    assert [p["stay_on_gain"] for p in report["planners"]] == [1.08, 1.0]
    assert all(p["rounds"] > 0 for p in report["planners"])
    assert [r["stay_on_gain"] for r in report["rows"]] == [1.08, 1.0]
    assert report["rows"][0]["vs_first"]["speedup"] == 1.0  # the first setting against itself
    for row in report["rows"]:
        assert row["identical"] == 6  # greedy drafting changes no output
        low, high = row["vs_plain"]["ci95"]
        assert low <= row["vs_plain"]["speedup"] <= high
        assert row["passes_ratio"] > 0


def test_against_a_revision_its_planner_drafts_beside_this_one(tiny_package, tmp_path):
    stdout, report = _planner_ab(tiny_package("t5", "fp32")[0], tmp_path, "--against", "HEAD")
    assert "planner at HEAD:" in stdout and "this planner:" in stdout
    assert [r["arm"] for r in report["rows"]] == ["planner at HEAD", "this planner"]
    assert [p["module"] for p in report["planners"]] == [
        "planner_at_rev.draft_control", "edgeseq.runtime.draft_control"]
    assert all(p["rounds"] > 0 for p in report["planners"])  # both drafted
    assert all(row["identical"] == 6 for row in report["rows"])


def test_several_runs_each_start_fresh_planners_and_are_pooled(tiny_package, tmp_path):
    stdout, report = _planner_ab(tiny_package("t5", "fp32")[0], tmp_path, "--stay-on", "1.08,1.0",
                                 "--runs", "2")
    assert "run 1, stay on down to 1.08" in stdout and "run 2, stay on down to 1.08" in stdout
    assert "pooled over 2 runs, stay on down to 1.00" in stdout
    assert len(report["by_run"]) == 2
    first, second = (run["planners"][0]["rounds"] for run in report["by_run"])
    assert first > 0 and second > 0
    for row in report["rows"]:  # pooled: both runs' inputs
        assert row["identical"] == 12
        low, high = row["vs_plain"]["ci95"]
        assert low <= row["vs_plain"]["speedup"] <= high


def test_plain_greedy_decodes_on_an_engine_of_its_own():
    """No setting shares its engine (buffers, caches, planner) with plain greedy's calls."""
    from bench.planner_ab import run_rounds

    class Engine:
        def __init__(self):
            self.calls = []

        def generate(self, item, **options):
            self.calls.append((item, options.get("draft")))
            stats = type("Stats", (), {"speculation": None, "decoder_passes": 3})
            return type("Result", (), {"stats": stats, "token_ids": [item]})

    plain, first, second = Engine(), Engine(), Engine()
    runs = run_rounds(plain, [first, second], [0, 1, 2], "layers", {}, rounds=2)
    assert plain.calls == [(i, None) for _ in range(2) for i in range(3)]
    assert first.calls == second.calls == [(i, "layers") for _ in range(2) for i in range(3)]
    assert runs["passes"] == {"plain": 18, 0: 18, 1: 18}
    assert [len(r) for r in runs["seconds"]["plain"]] == [3, 3]


def test_a_planner_from_before_call_figures_plans_without_them():
    """The drafting loop passes the call's own drafts to plan(); a planner of an older
    revision, which took none, still plans (without them), under its own module's name."""
    from bench.planner_ab import _taking_call_figures
    from edgeseq.runtime.draft_control import DraftController, DraftPlan

    class Older:
        def plan(self, situation=None):
            return DraftPlan(0, 3, situation)
    wrapped = _taking_call_figures(Older)
    assert wrapped().plan(2, {0: object()}) == DraftPlan(0, 3, 2)
    assert wrapped.__module__ == Older.__module__
    assert _taking_call_figures(DraftController) is DraftController
