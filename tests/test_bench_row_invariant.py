"""bench.row_invariant: the same package before and after the rewrite, each in child
processes, plain greedy and input drafting on each; drafted outputs counted against
plain greedy's."""
from __future__ import annotations

import json

from bench.row_invariant import child, main
from edgeseq.export import export_checkpoint


def test_a_child_decodes_every_input_plain_and_drafted(tiny_package):
    result = child(str(tiny_package("t5", "int8")[0]), "ids", 3, 1, max_new_tokens=4)
    assert result["row_invariant"] is True
    assert result["plain_s"] > 0 and result["input_s"] > 0
    assert len(result["outputs"]["plain"]) == len(result["outputs"]["input"]) == 3
    assert result["outputs"]["input"] == result["outputs"]["plain"]


def test_a_package_exported_without_the_rewrite_is_compared_with_its_rewritten_copy(
        tiny_checkpoint, tmp_path, capsys):
    before = tmp_path / "before"
    export_checkpoint(tiny_checkpoint("t5"), before, quant="int8", validate=False,
                      row_invariant=False)
    assert main([str(before), "--data", "ids", "--limit", "2", "--rounds", "1",
                 "--threads", "1", "--max-new-tokens", "3", "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "row_invariant.json").read_text())
    assert report["rows"]["before"]["row_invariant"] is False
    assert report["rows"]["after"]["row_invariant"] is True
    assert report["rows"]["after"]["input_identical_to_plain"] == report["inputs"] == 2
    assert set(report["time_after_over_before"]) == {"plain", "input"}
    assert "after / before time" in capsys.readouterr().out
    assert not json.loads((before / "manifest.json").read_text()).get("row_invariant_decoder")
