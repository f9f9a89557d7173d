"""bench.draft_trace: a drafter's planner followed block by block over repeated runs."""
from __future__ import annotations

import json

from bench.draft_trace import main


def test_each_repeat_reports_its_blocks_and_what_the_planner_believed(tiny_package, tmp_path, capsys):
    package = tiny_package("t5", "fp32")[0]
    assert main([str(package), "--drafter", "layers", "--data", "ids", "--limit", "6",
                 "--block", "4", "--repeats", "2", "--max-new-tokens", "12", "--threads", "1",
                 "--out", str(tmp_path)]) == 0
    trace = json.loads((tmp_path / "draft_trace.json").read_text())
    plain, *drafted = trace["runs"]
    assert [r["name"] for r in trace["runs"]] == ["plain", "layers #1", "layers #2"]
    assert plain["speedup"] == 1.0 and all("planner" not in b for b in plain["blocks"])
    for run in drafted:
        assert [b["first"] for b in run["blocks"]] == [0, 4]  # 6 calls in blocks of 4
        assert run["speedup"] == plain["seconds"] / run["seconds"]
        # drafting changes no output: each block generates what plain greedy did
        assert [b["tokens"] for b in run["blocks"]] == [b["tokens"] for b in plain["blocks"]]
        for block in run["blocks"]:
            planner = block["planner"]
            assert set(planner["ways"]) == {"1", "2"}  # the exits a 3-layer decoder drafts from
            for way in planner["ways"].values():
                assert len(way["survival"]) == 4 and all(0 <= s <= 1 for s in way["survival"])
    # one planner, kept by the engine across repeats: its count of rounds never goes back
    rounds = [b["planner"]["rounds"] for run in drafted for b in run["blocks"]]
    assert rounds[0] > 0 and rounds == sorted(rounds)
    assert "layers #2" in capsys.readouterr().out


def test_every_run_starts_with_an_empty_ngram_table(tiny_package, tmp_path, monkeypatch):
    """Each run decodes the same inputs: a table kept from the run before would let n-gram
    drafting recycle their outputs."""
    import bench.draft_trace as trace
    tables_at_start = []

    def recording(engine, inputs, options, block):
        tables_at_start.append(len(engine.ngram._table) + len(engine.ngram._pending))
        return run_blocks(engine, inputs, options, block)
    run_blocks = trace.run_blocks
    monkeypatch.setattr(trace, "run_blocks", recording)
    package = tiny_package("t5", "fp32")[0]
    assert main([str(package), "--drafter", "ngram", "--data", "ids", "--limit", "4",
                 "--block", "4", "--repeats", "2", "--max-new-tokens", "8", "--threads", "1"]) == 0
    assert tables_at_start == [0, 0, 0]  # plain, ngram #1, ngram #2
