"""bench.decoder_compute: an int8 package's decoder with its weights dequantized to fp32
MatMuls computes what the package's own does (to int8 activation rounding), keeps
greedy speculation exact, and is compared with it in one run."""
from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from edgeseq.runtime.providers import make_session

import edgeseq
from bench.decoder_compute import fp32_decoder, main
from export.row_invariant import all_nodes


def _logits(package, decoder=None) -> np.ndarray:
    engine = edgeseq.load(str(package), threads=1)
    if decoder is not None:
        engine.runner.decoder = make_session(decoder, engine.config)
    ids = np.array([[5, 6, 7, 8, 1]], np.int64)
    state = engine.runner.encode(ids, np.ones_like(ids))
    return engine.runner.step(np.array([[0, 9, 10, 11]], np.int64), state, engine.runner.new_cache(1, 8))


def test_the_dequantized_decoder_computes_the_packages_products_in_fp32(tiny_package, tmp_path):
    """Its MatMuls give what the package's MatMulNBits give with fp32 activations
    (accuracy_level 0: the same weights dequantized block by block)."""
    package = tmp_path / "package"
    shutil.copytree(tiny_package("t5", "int8")[0], package)
    path = fp32_decoder(package, tmp_path / "fp32")
    assert "MatMulNBits" not in {n.op_type for n in all_nodes(onnx.load(str(path)).graph)}
    reference = onnx.load(str(package / "decoder.onnx"))
    for node in all_nodes(reference.graph):
        for attr in node.attribute:
            if node.op_type == "MatMulNBits" and attr.name == "accuracy_level":
                attr.i = 0
    onnx.save(reference, str(package / "decoder_fp32_activations.onnx"))  # its weights: the package's
    fp32 = _logits(package, path)
    expected = _logits(package, package / "decoder_fp32_activations.onnx")
    np.testing.assert_allclose(fp32, expected, atol=1e-4 * np.abs(expected).max())


def test_a_package_without_8_bit_products_is_refused(tiny_package, tmp_path):
    with pytest.raises(SystemExit, match="8-bit MatMulNBits"):
        fp32_decoder(tiny_package("t5", "fp32")[0], tmp_path)


def test_the_run_compares_both_decoders_plain_and_drafted(tiny_package, tmp_path, capsys):
    package = tiny_package("t5", "int8")[0]
    assert main([str(package), "--data", "ids", "--limit", "3", "--rounds", "1", "--threads", "1",
                 "--max-new-tokens", "4", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "decoder_compute.json").read_text())
    assert report["input_identical_to_plain"] == {"int8": 3, "fp32": 3}
    assert set(report["fp32_over_int8_time"]) == {"plain", "input"}
    assert "fp32 / int8 time" in capsys.readouterr().out
