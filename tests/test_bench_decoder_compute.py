"""bench.decoder_compute: an int8 package decoding with its decoder multiplying in int8
and in fp32 (runtime/decoder_products.py), compared in one run, greedy speculation exact
on both."""
from __future__ import annotations

import json

import pytest

from bench.decoder_compute import main
from bench.speculative import SHARED


def test_the_run_compares_both_decoders_plain_and_drafted(tiny_package, tmp_path, capsys):
    package = tiny_package("t5", "int8")[0]
    assert main([str(package), "--data", "ids", "--limit", "3", "--rounds", "1", "--threads", "1",
                 "--max-new-tokens", "4", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "decoder_compute.json").read_text())
    assert report["input_identical_to_plain"] == {"int8": 3, "fp32": 3}
    assert set(report["fp32_over_int8_time"]) == {"plain", "input"}
    assert "fp32 / int8 time" in capsys.readouterr().out


def test_a_package_without_8_bit_products_is_refused(tiny_package):
    with pytest.raises(SystemExit, match="8-bit products"):
        main([str(tiny_package("t5", "fp32")[0]), "--data", "ids", "--limit", "1"])


@pytest.mark.skipif(not (SHARED / "data" / "jfleg-dev").is_dir(), reason="needs ../shared's JFLEG")
def test_on_jfleg_each_way_reports_the_gleu_of_its_outputs(tmp_path, capsys):
    assert main(["default", "--limit", "4", "--rounds", "1", "--threads", "1",
                 "--max-new-tokens", "16", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "decoder_compute.json").read_text())
    assert set(report["quality"]) == {"int8/plain", "int8/input", "fp32/plain", "fp32/input"}
    assert all(0 < g < 1 for g in report["quality"].values())
    assert "GLEU: int8/plain" in capsys.readouterr().out
