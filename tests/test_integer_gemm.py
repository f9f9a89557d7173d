"""int8 encoders' integer GEMM per CPU: where the stored uint8 x int8 product saturates
(x86 without VNNI) the runtime loads the same weights as uint8 with zero point 128, the
same integers, rewritten in memory; the product is then the exact integer product."""
from __future__ import annotations

import gc
import hashlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, numpy_helper

from edgeseq.errors import OptionsError
from edgeseq.export.weight_formats import LinearEmitter, Quant, quantize_int8_columns
from edgeseq.runtime.integer_gemm import (ZERO_POINT_NAME, unsigned_weight_graph,
                                          wants_unsigned_weights)
from edgeseq.runtime.providers import SessionConfig

RNG = np.random.default_rng(7)
AVX2 = {"sse4_2", "avx2", "fma"}


def test_unsigned_weights_are_chosen_where_the_stored_product_saturates():
    assert wants_unsigned_weights(None, True, AVX2)
    assert not wants_unsigned_weights(None, True, AVX2 | {"avx512_vnni"})
    assert not wants_unsigned_weights(None, True, AVX2 | {"avx_vnni"})
    assert not wants_unsigned_weights(None, True, None)  # not x86: other kernels
    assert wants_unsigned_weights(True, True, AVX2 | {"avx512_vnni"})  # the caller's choice wins
    assert not wants_unsigned_weights(False, True, AVX2)
    assert not wants_unsigned_weights(True, False, AVX2)  # no integer GEMM: nothing to rewrite


def test_cpus_without_proc_cpuinfo_are_read_through_numpy():
    """Windows and macOS have no /proc/cpuinfo; numpy's runtime dispatch knows the CPU."""
    from edgeseq.runtime.integer_gemm import integer_gemm_saturates, numpy_cpu_flags
    avx2_laptop = {"SSE2": True, "AVX2": True, "AVX512F": False, "AVX512VNNI": False}
    assert integer_gemm_saturates(numpy_cpu_flags(avx2_laptop))
    assert not integer_gemm_saturates(numpy_cpu_flags({**avx2_laptop, "AVX512F": True,
                                                       "AVX512VNNI": True}))
    assert numpy_cpu_flags({"NEON": True, "ASIMD": True}) is None  # not x86: unknown
    assert numpy_cpu_flags() is None or numpy_cpu_flags() <= {"avx2", "avx512f", "avx512_vnni"}


def test_the_choice_must_be_none_or_a_bool():
    with pytest.raises(OptionsError, match="unsigned_int8_weights"):
        SessionConfig(unsigned_int8_weights="yes")


def _row_int8_linear_file(folder, w: np.ndarray, external: bool):
    """x @ w the way int8 encoders compute it (LinearEmitter, many_rows), saved to a file;
    `external`: its weights in a weights file beside it, as packages keep them."""
    from edgeseq.export.onnx_builder import GraphBuilder, WeightStore
    g = GraphBuilder(WeightStore({"lin.w": w}))
    x = g.add_input("x", TensorProto.FLOAT, ["rows", w.shape[0]])
    g.add_output(LinearEmitter(Quant.INT8, many_rows=True).linear(g, x, "lin", bias=False), "y")
    model = g.model("row_int8")
    model.graph.initializer.extend(numpy_helper.from_array(g.store.get(n), n) for n in g.used_weights)
    path = folder / "linear.onnx"
    onnx.save(model, path, save_as_external_data=external, location="weights.bin",
              size_threshold=0)
    return path


def _exact_row_int8_product(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """What the graph means: rows quantized to 8 bits with their own scale (max |x| / 127,
    round half to even as QuantizeLinear), times the int8 columns, summed in integers."""
    row_scale = np.abs(x).max(axis=1, keepdims=True) / np.float32(127)
    rows = np.clip(np.rint(x / row_scale), -128, 127).astype(np.int64)
    q, col_scale = quantize_int8_columns(w)
    return (rows @ q.astype(np.int64)).astype(np.float64) * row_scale * col_scale


@pytest.mark.parametrize("external", [True, False])
def test_a_rewritten_integer_gemm_is_the_exact_integer_product(tmp_path, external):
    # 512 inputs of standard-normal rows: the stored uint8 x int8 product saturated on an
    # AVX2 CPU by up to 9% of the scale; the exact integer product differs from fp32 math
    # only by float rounding.
    w = RNG.standard_normal((512, 96)).astype(np.float32)
    x = RNG.standard_normal((40, 512)).astype(np.float32)
    graph = unsigned_weight_graph(_row_int8_linear_file(tmp_path, w, external))
    assert graph.weights == ("lin.w_int8c",)
    assert bool(graph.external) == external  # the other tensors stay in the weights file
    opts = ort.SessionOptions()
    graph.session_options(opts)
    y = ort.InferenceSession(graph.model, opts, providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]
    exact = _exact_row_int8_product(x, w)
    assert np.abs(y - exact).max() <= 1e-5 * np.abs(exact).max()


def test_the_rewrite_changes_only_the_int8_weights_and_their_products(tiny_package):
    package = tiny_package("t5", "int8")[0]
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in package.iterdir()}
    stored = onnx.load(package / "encoder.onnx", load_external_data=False)
    graph = unsigned_weight_graph(package / "encoder.onnx")
    rewritten = onnx.load_from_string(graph.model)

    gemms = [n for n in stored.graph.node if n.op_type == "MatMulIntegerToFloat"]
    assert sorted(graph.weights) == sorted(n.input[1] for n in gemms) and gemms
    for before, after in zip(stored.graph.node, rewritten.graph.node, strict=True):
        if before.op_type == "MatMulIntegerToFloat":
            assert list(after.input) == list(before.input) + [""] * (5 - len(before.input)) \
                + [ZERO_POINT_NAME]
        else:
            assert after == before
    int8 = {t.name: numpy_helper.to_array(t, str(package)) for t in stored.graph.initializer}
    for tensor in rewritten.graph.initializer:
        if tensor.name == ZERO_POINT_NAME:
            assert numpy_helper.to_array(tensor).tolist() == 128
            continue
        assert tensor.data_location == TensorProto.EXTERNAL  # none moved into the graph
        if tensor.name in graph.weights:  # handed over as a buffer
            uint8 = graph.external[tensor.name].numpy()
            assert tensor.data_type == TensorProto.UINT8 and uint8.dtype == np.uint8
            assert np.array_equal(uint8.astype(np.int16) - 128, int8[tensor.name])
        else:  # onnxruntime reads it from the package's folder, as from the file
            assert tensor.name not in graph.external
    assert graph.folder == package.resolve()
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in package.iterdir()} == digests


def test_the_session_does_not_need_the_buffers_it_was_given(tiny_package):
    """onnxruntime copies them when it makes the session, so the runtime drops them."""
    package = tiny_package("bart", "int8")[0]
    ids = RNG.integers(4, 100, (2, 9)).astype(np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    graph = unsigned_weight_graph(package / "encoder.onnx")
    opts = ort.SessionOptions()
    graph.session_options(opts)
    session = ort.InferenceSession(graph.model, opts, providers=["CPUExecutionProvider"])
    before = session.run(None, feeds)
    for value in graph.external.values():  # overwrite what the buffers held, then free them
        value.numpy()[...] = 0
    del graph, opts
    gc.collect()
    for a, b in zip(before, session.run(None, feeds), strict=True):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("family", ["t5", "bart", "marian"])
def test_an_int8_package_decodes_the_same_with_unsigned_weights_where_its_product_is_exact(
        family, tiny_package):
    """Forced on any CPU. Where the stored uint8 x int8 product saturates (x86 without
    VNNI) the stored weights are not the reference; there the quantized packages' bounds
    (test_quantization) check the unsigned weights that the runtime then loads."""
    import edgeseq
    from edgeseq.runtime.integer_gemm import integer_gemm_saturates, x86_cpu_flags
    package = tiny_package(family, "int8")[0]
    unsigned = edgeseq.load(str(package), threads=1, unsigned_int8_weights=True)
    stored = edgeseq.load(str(package), threads=1, unsigned_int8_weights=False)
    assert unsigned.runner.sessions.unsigned_weights and not stored.runner.sessions.unsigned_weights
    source = RNG.integers(4, unsigned.arch.vocab_size, 12).tolist()
    tokens = unsigned.generate(source, max_new_tokens=8).token_ids
    assert len(tokens) > 0
    if integer_gemm_saturates(x86_cpu_flags()):
        pytest.skip("the stored product saturates on this CPU: it is not the reference")
    ids = np.array([source], np.int64)
    mask = np.ones_like(ids)
    for a, b in zip(unsigned.runner.encode(ids, mask).cross, stored.runner.encode(ids, mask).cross,
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * np.abs(b).max())
    assert tokens == stored.generate(source, max_new_tokens=8).token_ids


def test_a_weight_whose_bytes_do_not_match_its_shape_is_a_package_error(tiny_package, tmp_path):
    import shutil

    from edgeseq.errors import PackageError
    package = tiny_package("t5", "int8")[0]
    model = onnx.load(package / "encoder.onnx", load_external_data=False)
    weight = next(n.input[1] for n in model.graph.node if n.op_type == "MatMulIntegerToFloat")
    tensor = next(t for t in model.graph.initializer if t.name == weight)
    length = next(e for e in tensor.external_data if e.key == "length")
    length.value = str(int(length.value) - 1)
    onnx.save(model, tmp_path / "encoder.onnx")
    shutil.copy(package / "weights.bin", tmp_path / "weights.bin")
    with pytest.raises(PackageError, match=rf"encoder.onnx could not be rewritten.*{weight}"):
        unsigned_weight_graph(tmp_path / "encoder.onnx")
