"""bench.planner_ab: settings of the draft planner against each other and plain greedy."""
from __future__ import annotations

import json

from bench.planner_ab import load_arms, main


def test_each_setting_drafts_with_its_own_planner(tiny_package):
    package = tiny_package("t5", "fp32")[0]
    options = {"max_new_tokens": 8, "rerank_source": False}
    engines = load_arms(str(package), [1.08, 1.0], "layers", 1, options)
    planners = [e.draft_planner(draft="layers", **options) for e in engines]
    assert [p.stay_on_gain for p in planners] == [1.08, 1.0]
    engines[1].generate([5, 6, 7], draft="layers", **options)  # the planner kept is the one set
    assert engines[1].draft_planner(draft="layers", **options) is planners[1]


def test_a_run_reports_each_setting_against_plain_and_the_first(tiny_package, tmp_path, capsys):
    package = tiny_package("t5", "fp32")[0]
    assert main([str(package), "--data", "ids", "--limit", "6", "--rounds", "2",
                 "--max-new-tokens", "8", "--threads", "1", "--stay-on", "1.08,1.0",
                 "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "planner_ab.json").read_text())
    assert [r["stay_on_gain"] for r in report["rows"]] == [1.08, 1.0]
    first, second = report["rows"]
    assert first["vs_first"]["speedup"] == 1.0  # the first setting against itself
    for row in report["rows"]:
        assert row["identical"] == 6  # greedy drafting changes no output
        low, high = row["vs_plain"]["ci95"]
        assert low <= row["vs_plain"]["speedup"] <= high
    assert "stay on down to 1.00" in capsys.readouterr().out
