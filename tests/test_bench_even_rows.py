"""bench.even_rows: a package's passes with an even number of rows against as they come,
plain greedy and drafters on each, and whether each way's drafts gave plain greedy's
tokens (runtime/nbits_rows.py)."""
from __future__ import annotations

import json

import edgeseq.runtime.nbits_rows as nbits_rows
from bench.even_rows import main


def test_the_run_compares_both_ways_plain_and_drafted(tiny_package, tmp_path, capsys, monkeypatch):
    """Told this CPU pairs rows, the even way pads its passes; both ways' drafts are
    plain greedy's on a decoder exact either way."""
    monkeypatch.setattr(nbits_rows, "row_grouping", lambda kind, threads=1: nbits_rows.PAIRS)
    package = tiny_package("t5", "int8")[0]
    assert main([str(package), "--limit", "3", "--rounds", "1", "--threads", "1",
                 "--drafters", "layers,ngram", "--max-new-tokens", "5", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "even_rows.json").read_text())
    assert report["even_rows_chosen"] is True
    assert set(report["seconds"]) == {f"{way}/{c}" for way in ("even", "as-they-come")
                                      for c in ("plain", "layers", "ngram")}
    assert report["identical_to_plain"] == {f"{way}/{c}": 3 for way in ("even", "as-they-come")
                                            for c in ("layers", "ngram")}
    assert set(report["even_over_as_they_come_time"]) == {"plain", "layers", "ngram"}
    out = capsys.readouterr().out
    assert "even rows chosen on this CPU: yes" in out and "even rows / as they come, time" in out
