"""bench.integer_gemm: a child loads the package with the setup it is named for, decodes
every input, and compares its encoder with an fp32 reference."""
from __future__ import annotations

import math

import pytest

from bench.integer_gemm import child


@pytest.mark.parametrize("setup", ["stored", "unsigned"])
def test_a_child_measures_the_setup_it_is_named_for(setup, tiny_package, monkeypatch):
    import edgeseq
    int8, fp32 = (str(tiny_package("t5", quant)[0]) for quant in ("int8", "fp32"))
    loads = []
    load = edgeseq.load
    monkeypatch.setattr(edgeseq, "load", lambda *a, **k: loads.append(k) or load(*a, **k))
    result = child(int8, setup, "random", 3, 1, fp32, max_new_tokens=4)
    assert loads[0]["unsigned_int8_weights"] is (setup == "unsigned")
    assert len(result["outputs"]) == 3 and all(1 <= len(o) <= 4 for o in result["outputs"])
    assert result["encode_ms"] > 0 and result["rss_loaded_mb"] <= result["peak_rss_mb"]
    assert math.isfinite(result["encoder_error_vs_fp32"]) and result["encoder_error_vs_fp32"] > 0
