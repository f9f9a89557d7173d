"""An int8 decoder can multiply in fp32 over its own weights, dequantized at load
(runtime/decoder_products.py): the same products MatMulNBits computes with fp32
activations, on by default only where measured faster, counted by the memory model,
and the package on disk untouched."""
from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest

import edgeseq
from edgeseq.cli import main
from edgeseq.errors import OptionsError, PackageError
from edgeseq.export.row_invariant import all_nodes
from edgeseq.runtime.decoder_products import (AUTO_LIMIT, MB, fp32_product_bytes,
                                              fp32_product_graph, wants_fp32_products)
from edgeseq.runtime.integer_gemm import integer_gemm_saturates, x86_cpu_flags
from edgeseq.runtime.nbits_rows import ALONE, nbits_kinds, row_grouping
from edgeseq.runtime.providers import make_session

NO_VNNI = {"avx2", "fma"}
VNNI = {"avx2", "avx512f", "avx512_vnni"}


def _logits(engine) -> np.ndarray:
    ids = np.array([[5, 6, 7, 8, 1]], np.int64)
    state = engine.runner.encode(ids, np.ones_like(ids))
    return engine.runner.step(np.array([[0, 9, 10, 11]], np.int64), state,
                              engine.runner.new_cache(1, 8))


@pytest.mark.parametrize("family", ["t5", "bart", "marian"])
def test_the_fp32_products_are_matmulnbits_products_with_fp32_activations(tiny_package, family,
                                                                         tmp_path):
    """MatMulNBits at accuracy_level 0 multiplies fp32 activations by the same weights
    dequantized block by block: what the rewrite hands onnxruntime."""
    package = tmp_path / "package"
    shutil.copytree(tiny_package(family, "int8")[0], package)
    reference = onnx.load(str(package / "decoder.onnx"))
    for node in all_nodes(reference.graph):
        for attr in node.attribute:
            if node.op_type == "MatMulNBits" and attr.name == "accuracy_level":
                attr.i = 0
    onnx.save(reference, str(package / "decoder_fp32_activations.onnx"))  # the package's weights
    engine = edgeseq.load(str(package), threads=1, fp32_decoder_products=False)
    engine.runner.decoder = make_session(package / "decoder_fp32_activations.onnx", engine.config)
    expected = _logits(engine)
    fp32 = _logits(edgeseq.load(str(package), threads=1, fp32_decoder_products=True))
    np.testing.assert_allclose(fp32, expected, atol=1e-4 * np.abs(expected).max())


def test_every_8_bit_product_becomes_a_matmul_over_the_dequantized_weights(tiny_package):
    package = tiny_package("t5", "int8")[0]
    graph = fp32_product_graph(package / "decoder.onnx")
    model = onnx.load_from_string(graph.model)
    nodes = list(all_nodes(model.graph))
    assert not any(n.op_type == "MatMulNBits" for n in nodes)
    products = [n for n in nodes if n.op_type == "MatMul" and n.input[1].endswith(".fp32")]
    assert {n.input[1] for n in products} == {w + ".fp32" for w in graph.weights}
    assert graph.buffer_bytes == fp32_product_bytes((package / "decoder.onnx").read_bytes())
    read = {name for n in nodes for name in n.input}
    assert {t.name for t in model.graph.initializer} <= read  # unread int8 weights are gone


def _branching_product(tmp_path, bits: int = 8):
    """A graph whose If branch multiplies x [2, 40] by an 8-bit weight (N 8, blocks of 16,
    the last one padded) that another node also reads, and the same product at
    accuracy_level 0 as the reference."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    k, n, block = 40, 8, 16
    weight = rng.integers(0, 256, (n, 3, block), dtype=np.uint8)
    scales = rng.uniform(0.01, 0.1, n * 3).astype(np.float32)
    def build(level: int) -> bytes:
        product = helper.make_node("MatMulNBits", ["x", "w", "s"], ["y"], domain="com.microsoft",
                                   K=k, N=n, bits=bits, block_size=block, accuracy_level=level)
        then = helper.make_graph([product], "then", [], [helper.make_tensor_value_info("y", 1, None)])
        other = helper.make_graph([helper.make_node("Identity", ["z"], ["y2"])], "else", [],
                                  [helper.make_tensor_value_info("y2", 1, None)])
        nodes = [helper.make_node("If", ["c"], ["out"], then_branch=then, else_branch=other),
                 helper.make_node("Identity", ["w"], ["w_seen"])]
        main = helper.make_graph(
            nodes, "main",
            [helper.make_tensor_value_info("x", 1, [2, k]), helper.make_tensor_value_info("c", 9, []),
             helper.make_tensor_value_info("z", 1, [2, n])],
            [helper.make_tensor_value_info("out", 1, None),
             helper.make_tensor_value_info("w_seen", TensorProto.UINT8, None)],
            initializer=[numpy_helper.from_array(weight, "w"), numpy_helper.from_array(scales, "s")])
        model = helper.make_model(main, opset_imports=[helper.make_opsetid("", 17),
                                                       helper.make_opsetid("com.microsoft", 1)])
        return model.SerializeToString()
    path = tmp_path / "graph.onnx"
    path.write_bytes(build(4))
    return path, build(0)


def test_products_inside_if_branches_are_rewritten_and_weights_other_nodes_read_stay(tmp_path):
    import onnxruntime as ort
    path, reference = _branching_product(tmp_path)
    graph = fp32_product_graph(path)
    assert graph.weights == ("w",)
    model = onnx.load_from_string(graph.model)
    assert "w" in {t.name for t in model.graph.initializer}  # the Identity still reads it
    assert "s" not in {t.name for t in model.graph.initializer}
    opts = ort.SessionOptions()
    graph.session_options(opts)
    rewritten = ort.InferenceSession(graph.model, opts, providers=["CPUExecutionProvider"])
    expected = ort.InferenceSession(reference, providers=["CPUExecutionProvider"])
    feeds = {"x": np.random.default_rng(1).normal(size=(2, 40)).astype(np.float32),
             "c": np.array(True), "z": np.zeros((2, 8), np.float32)}
    got, want = rewritten.run(None, feeds), expected.run(None, feeds)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-5)
    assert np.array_equal(got[1], want[1])


def test_4_bit_products_are_left_as_they_are(tmp_path):
    path, _ = _branching_product(tmp_path, bits=4)
    assert fp32_product_bytes(path.read_bytes()) == 0


def test_the_package_on_disk_is_unchanged(tiny_package):
    package = tiny_package("bart", "int8")[0]
    before = {p.name: p.read_bytes() for p in package.iterdir() if p.is_file()}
    engine = edgeseq.load(str(package), threads=1, fp32_decoder_products=True)
    assert engine.runner.sessions.fp32_products
    assert {p.name: p.read_bytes() for p in package.iterdir() if p.is_file()} == before


@pytest.mark.parametrize("quant", ["fp32", "fp16", "int4"])
def test_packages_other_than_int8_load_as_stored(tiny_package, quant):
    """fp32 and fp16 decoders have no 8-bit products; an int4 package's few 8-bit ones
    stay (its 4-bit products are where its time goes: unmeasured)."""
    package = tiny_package("t5", quant)[0]
    engine = edgeseq.load(str(package), threads=1, fp32_decoder_products=True)
    assert engine.runner.sessions.fp32_products == ()


def test_by_default_only_small_drafting_decoders_on_cpus_without_vnni_multiply_in_fp32():
    small, large = int(6.5 * MB), 22 * MB  # measured faster / 1.7x slower in fp32
    exact = lambda: True
    auto = lambda cpu, flags, size, drafts=True: wants_fp32_products(None, cpu, flags, size,
                                                                     drafts, exact)
    assert auto("cpu", NO_VNNI, small)
    assert auto("cpu", NO_VNNI, AUTO_LIMIT)
    assert not auto("cpu", NO_VNNI, AUTO_LIMIT + 1)
    assert not auto("cpu", NO_VNNI, large)
    assert not auto("cpu", NO_VNNI, small, drafts=False)  # one-token passes: slower in fp32
    assert not auto("cpu", VNNI, small)     # int8 rows exact here: as stored
    assert not auto("cpu", None, small)     # ARM, or unknown, rows exact
    assert not auto("cuda", NO_VNNI, small)
    assert wants_fp32_products(True, "cpu", VNNI, large, False, exact)
    assert not wants_fp32_products(False, "cpu", NO_VNNI, small, True, exact)
    assert not wants_fp32_products(True, "cpu", NO_VNNI, 0, True, exact)  # nothing to rewrite


def test_small_drafting_decoders_multiply_in_fp32_where_int8_rows_alone_round_differently():
    """AMD Zen 4's int8 products take rows in pairs and a lone row by another kernel: int8
    products there would make verify passes' rows differ from one-token passes."""
    small, large = int(6.5 * MB), 22 * MB
    paired = lambda: False
    assert wants_fp32_products(None, "cpu", VNNI, small, True, paired)
    assert wants_fp32_products(None, "cpu", None, small, True, paired)
    assert not wants_fp32_products(None, "cpu", VNNI, large, True, paired)
    assert not wants_fp32_products(None, "cpu", VNNI, small, False, paired)
    assert not wants_fp32_products(None, "cuda", VNNI, small, True, paired)
    assert not wants_fp32_products(False, "cpu", VNNI, small, True, paired)


def test_the_cpu_is_asked_about_its_int8_rows_only_when_the_answer_decides():
    asked = []

    def probe():
        asked.append(True)
        return True
    small, large = int(6.5 * MB), 22 * MB
    wants_fp32_products(None, "cpu", NO_VNNI, small, True, probe)   # fp32 either way
    wants_fp32_products(None, "cpu", VNNI, large, True, probe)      # int8 either way
    wants_fp32_products(None, "cpu", VNNI, small, False, probe)
    wants_fp32_products(None, "cuda", VNNI, small, True, probe)
    wants_fp32_products(True, "cpu", VNNI, small, True, probe)
    assert not asked
    wants_fp32_products(None, "cpu", VNNI, small, True, probe)
    assert asked


def test_the_default_follows_this_cpu_and_the_packages_recommended_drafter(tiny_package):
    """The default model recommends input drafting; the tiny test packages no drafter."""
    decoder = (edgeseq.load("default").directory / "decoder.onnx").read_bytes()
    alone = all(row_grouping(kind) == ALONE for kind in nbits_kinds(decoder))
    fp32 = integer_gemm_saturates(x86_cpu_flags()) or not alone
    assert bool(edgeseq.load("default", threads=1).runner.sessions.fp32_products) == fp32
    engine = edgeseq.load(str(tiny_package("t5", "int8")[0]), threads=1)
    assert not engine.runner.sessions.fp32_products


def test_a_bad_choice_is_named(tiny_package):
    with pytest.raises(OptionsError, match="fp32_decoder_products"):
        edgeseq.load(str(tiny_package("t5", "int8")[0]), fp32_decoder_products="yes")


def test_a_decoder_that_cannot_be_read_is_a_package_error(tiny_package, tmp_path):
    package = tiny_package("t5", "int8")[0]
    data = (package / "decoder.onnx").read_bytes()
    cut = tmp_path / "cut" / "decoder.onnx"
    cut.parent.mkdir()
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(PackageError, match="decoder.onnx could not be rewritten"):
        fp32_product_graph(cut)
    alone = tmp_path / "decoder.onnx"  # its weights file is not beside it
    alone.write_bytes(data)
    with pytest.raises(PackageError, match="decoder.onnx could not be rewritten"):
        fp32_product_graph(alone)


def test_the_cli_says_and_chooses_how_the_decoder_multiplies(tiny_package, capsys):
    package = str(tiny_package("t5", "int8")[0])
    assert main(["info", package, "--json", "--decoder-products", "fp32"]) == 0
    assert json.loads(capsys.readouterr().out)["decoder_products"] == "fp32"
    assert main(["info", package, "--decoder-products", "fp32"]) == 0
    assert "decoder int8 weights: multiplied in fp32" in capsys.readouterr().out
    assert main(["info", package, "--json", "--decoder-products", "int8"]) == 0
    assert json.loads(capsys.readouterr().out)["decoder_products"] == "stored"
    assert main(["info", package, "--decoder-products", "int8"]) == 0
    assert "decoder int8 weights: multiplied in int8, as stored" in capsys.readouterr().out
    weights = {}
    for choice in ("int8", "fp32"):  # generate takes it, and plan counts the dequantized weights
        assert main(["generate", package, "5 9 13 2", "--ids", "--max-new-tokens", "4",
                     "--decoder-products", choice]) == 0
        capsys.readouterr()
        assert main(["plan", package, "--memory-budget", "400", "--json",
                     "--decoder-products", choice]) == 0
        weights[choice] = json.loads(capsys.readouterr().out)["predicted"]["weights"]
    assert weights["fp32"] > weights["int8"]
