"""Quantized weights reconstruct within their step size, the onnxruntime kernels compute
what the stored format means, and quantized packages stay within stated bounds."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeseq.export.weight_formats import (INT4_BLOCK, LinearEmitter, Quant,
                                           dequantize_int4_blocks, dequantize_int8_blocks,
                                           quantize_int4_blocks, quantize_int8_blocks,
                                           quantize_int8_columns)
from edgeseq.runtime.integer_gemm import integer_gemm_saturates, x86_cpu_flags

RNG = np.random.default_rng(0)


# On an x86 CPU without VNNI (AVX2 only: this project's AMD EPYC machines) onnxruntime's
# uint8 x int8 GEMM saturates: the stored int8 encoder linear errs by up to ~9% of its scale
# there (measured), ~1% with VNNI. The runtime therefore loads such encoders with uint8
# weights on those CPUs (runtime/integer_gemm.py; tests/test_integer_gemm.py), so the
# package bounds below hold everywhere; the single linear, run as stored, shows the defect.
U8S8_SATURATES = integer_gemm_saturates(x86_cpu_flags())
SATURATION = "uint8 x int8 GEMM saturates on x86 without VNNI (runtime/integer_gemm.py)"
ORT_VERSION = tuple(int(part) for part in ort.__version__.split(".")[:2])


def _run_single_op(node, inits, x):
    k = x.shape[-1]
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, n) for n, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 10
    return ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]


@pytest.mark.parametrize("k, block", [(256, 128), (80, 32)])
def test_int8_blocks_reconstruct_within_half_a_step(k, block):
    w = RNG.standard_normal((k, 48)).astype(np.float32)
    q, scale = quantize_int8_blocks(w, block)
    blocks = -(-k // block)
    assert q.dtype == np.uint8 and q.shape == (48, blocks, block) and scale.shape == (48 * blocks,)
    step = np.repeat(scale.reshape(48, blocks), block, axis=1)[:, :k].T
    assert np.all(np.abs(dequantize_int8_blocks(q, scale, k) - w) <= step / 2 + 1e-6)


@pytest.mark.parametrize("k", [64, 80])  # 80: the last block is padded
def test_int4_blocks_reconstruct_within_half_a_step(k):
    w = RNG.standard_normal((k, 24)).astype(np.float32)
    packed, scale, zp = quantize_int4_blocks(w)
    blocks = -(-k // INT4_BLOCK)
    assert packed.shape == (24, blocks, INT4_BLOCK // 2) and scale.shape == (24 * blocks,)
    step = np.repeat(scale.reshape(24, blocks), INT4_BLOCK, axis=1)[:, :k].T
    assert np.all(np.abs(dequantize_int4_blocks(packed, scale, zp, k) - w) <= step / 2 + 1e-6)


@pytest.mark.parametrize("k", [64, 80])
def test_matmulnbits_kernel_reads_our_int4_layout(k):
    w = RNG.standard_normal((k, 40)).astype(np.float32)
    x = RNG.standard_normal((1, 3, k)).astype(np.float32)
    packed, scale, zp = quantize_int4_blocks(w)
    node = helper.make_node("MatMulNBits", ["x", "b", "s", "z"], ["y"], domain="com.microsoft",
                            K=k, N=40, bits=4, block_size=INT4_BLOCK)  # fp32 compute: exact
    y = _run_single_op(node, {"b": packed, "s": scale, "z": zp}, x)
    np.testing.assert_allclose(y, x @ dequantize_int4_blocks(packed, scale, zp, k), atol=1e-4)


@pytest.mark.parametrize("accuracy_level, tolerance", [(0, 1e-4), (4, 0.02)])
def test_matmulnbits_kernel_reads_our_int8_layout(accuracy_level, tolerance):
    """accuracy_level 4 (what packages use) quantizes activations per row and block."""
    w = RNG.standard_normal((256, 32)).astype(np.float32)
    x = RNG.standard_normal((1, 3, 256)).astype(np.float32)
    q, scale = quantize_int8_blocks(w, 128)
    node = helper.make_node("MatMulNBits", ["x", "q", "s"], ["y"], domain="com.microsoft",
                            K=256, N=32, bits=8, block_size=128, accuracy_level=accuracy_level)
    y = _run_single_op(node, {"q": q, "s": scale}, x)
    exact = x @ dequantize_int8_blocks(q, scale, 256)
    assert np.abs(y - exact).max() <= tolerance * np.abs(exact).max()


def test_int8_columns_reconstruct_within_half_a_step():
    w = RNG.standard_normal((512, 40)).astype(np.float32)
    w[:, 3] = 0.0  # an all-zero column keeps a usable scale
    q, scale = quantize_int8_columns(w)
    assert q.dtype == np.int8 and q.shape == w.shape and scale.shape == (40,)
    assert np.all(np.abs(q * scale - w) <= scale / 2 + 1e-6)


def _row_int8_linear(x_shape: list, w: np.ndarray):
    """A session computing x @ w the way int8 encoders do (LinearEmitter, many_rows)."""
    from edgeseq.export.onnx_builder import GraphBuilder, WeightStore
    g = GraphBuilder(WeightStore({"lin.w": w}))
    x = g.add_input("x", TensorProto.FLOAT, x_shape)
    y = LinearEmitter(Quant.INT8, many_rows=True).linear(g, x, "lin", bias=False)
    g.add_output(y, "y")
    model = g.model("row_int8")
    model.graph.initializer.extend(numpy_helper.from_array(g.store.get(n), n) for n in g.used_weights)
    assert {n.op_type for n in model.graph.node} >= {"MatMulIntegerToFloat", "QuantizeLinear"}
    return ort.InferenceSession(model.SerializeToString())


@pytest.mark.xfail(U8S8_SATURATES, reason=SATURATION, strict=True)
def test_row_int8_linear_is_the_product_within_int8_error_for_any_leading_shape():
    w = RNG.standard_normal((256, 48)).astype(np.float32)
    session = _row_int8_linear(["batch", "rows", 256], w)
    for shape in [(1, 1, 256), (3, 7, 256)]:
        x = RNG.standard_normal(shape).astype(np.float32)
        y = session.run(None, {"x": x})[0]
        exact = x @ w
        assert y.shape == exact.shape
        assert np.abs(y - exact).max() <= 0.02 * np.abs(exact).max()


def test_a_row_int8_product_of_a_row_does_not_depend_on_the_other_rows():
    """Each row has its own activation scale and the integer GEMM sums exactly, so a row's
    result is bit-identical alone and among others (with MatMulNBits it was not: more
    than one row takes its fp32 path)."""
    w = RNG.standard_normal((128, 64)).astype(np.float32)
    session = _row_int8_linear(["batch", "rows", 128], w)
    x = (RNG.standard_normal((2, 9, 128)) * np.array([1.0, 40.0])[:, None, None]).astype(np.float32)
    together = session.run(None, {"x": x})[0]
    for b in range(2):
        alone = session.run(None, {"x": x[b:b + 1]})[0]
        assert np.array_equal(alone[0], together[b])
        assert np.array_equal(session.run(None, {"x": x[b:b + 1, :1]})[0][0, 0], together[b, 0])


@pytest.mark.parametrize("quant", ["int8", "int4"])
def test_quantized_packages_multiply_encoder_rows_in_integers_and_decoder_steps_with_matmulnbits(
        quant, tiny_package):
    import onnx
    for family in ("t5", "bart", "marian"):
        directory = tiny_package(family, quant)[0]
        ops = {name: {n.op_type for n in onnx.load(directory / f"{name}.onnx",
                                                   load_external_data=False).graph.node}
               for name in ("encoder", "decoder")}
        assert "MatMulIntegerToFloat" in ops["encoder"] and "MatMulNBits" not in ops["encoder"]
        assert "MatMulNBits" in ops["decoder"] and "MatMulIntegerToFloat" not in ops["decoder"]


# Measured on the standard-init models below (max |logit| 4-8): int8 0.6-1.1 %, int4
# 3-8 %, fp16 < 0.05 % of the largest logit. Bounds leave ~2x headroom.
BOUNDS = {"int8": 0.03, "int4": 0.15, "fp16": 0.002}


@pytest.fixture(scope="module")
def standard_checkpoints(tmp_path_factory):
    import torch
    import transformers as tf
    torch.manual_seed(0)
    models = {
        "t5": tf.T5ForConditionalGeneration(tf.T5Config(
            vocab_size=256, d_model=128, d_kv=32, d_ff=256, num_layers=2, num_heads=4,
            decoder_start_token_id=0)),
        "bart": tf.BartForConditionalGeneration(tf.BartConfig(
            vocab_size=256, d_model=128, encoder_layers=2, decoder_layers=2,
            encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=256,
            decoder_ffn_dim=256, max_position_embeddings=64, init_std=0.05,
            forced_eos_token_id=None))}
    out = {}
    for name, model in models.items():
        out[name] = tmp_path_factory.mktemp(name) / "ck"
        model.eval().save_pretrained(out[name])
    return out


@pytest.mark.parametrize("family", ["t5", "bart"])
@pytest.mark.parametrize("quant", ["int8", "int4", "fp16"])
def test_quantized_logits_and_greedy_agreement_within_bounds(family, quant,
                                                             standard_checkpoints, tmp_path, request):
    from edgeseq.export import export_checkpoint
    if quant == "int4" and ORT_VERSION < (1, 29):  # measured: T5's logits off by 15.9% there
        request.applymarker(pytest.mark.xfail(reason="onnxruntime < 1.29's int4 MatMulNBits "
                                              "misses the int4 bound", strict=False))
    report = export_checkpoint(standard_checkpoints[family], tmp_path / quant, quant=quant)
    v = report.validation
    assert v["decoder_max_abs_diff"] <= BOUNDS[quant] * v["reference_logit_scale"]
    assert v["greedy_agreement_with_fp32"] >= 0.9


@pytest.mark.parametrize("quant", ["fp32", "int8"])
def test_package_size_is_within_10_percent_of_its_parameters(quant, tmp_path):
    """One weights.bin shared by both graphs: the tied embedding / head is stored once."""
    import torch
    import transformers as tf
    from edgeseq.export import export_checkpoint
    torch.manual_seed(0)
    tf.T5ForConditionalGeneration(tf.T5Config(
        vocab_size=4096, d_model=256, d_kv=32, d_ff=512, num_layers=2, num_heads=8,
        decoder_start_token_id=0)).eval().save_pretrained(tmp_path / "ck")
    report = export_checkpoint(tmp_path / "ck", tmp_path / quant, quant=quant, validate=False)
    assert report.parameter_bytes <= report.package_bytes <= 1.10 * report.parameter_bytes
    embedding = 4096 * 256 * (4 if quant == "fp32" else 1)
    assert embedding < report.parameter_bytes < 2 * embedding + 3_000_000 * (4 if quant == "fp32" else 1)
