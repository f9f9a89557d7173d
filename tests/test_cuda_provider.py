"""On CUDA the runtime gives what it gives on CPU: sessions on the GPU, logits that match,
and greedy speculative decoding identical to plain greedy decoding. Runs only where
onnxruntime has CUDAExecutionProvider (a GPU machine with onnxruntime-gpu); skipped
elsewhere, CI included (but for the host-memory case)."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from edgeseq.export.validate import FP32_TOLERANCE
from scripted_drafter import SOURCES

import edgeseq

needs_cuda = pytest.mark.skipif(
    "CUDAExecutionProvider" not in ort.get_available_providers(),
    reason="no CUDAExecutionProvider in this onnxruntime (needs a GPU and onnxruntime-gpu)")

CASES = [(f, q) for f in ("t5", "bart", "marian") for q in ("fp32", "int8")]


@pytest.fixture(scope="module")
def engines(tiny_package):
    """(family, quant) -> (CPU engine, CUDA engine) of the same package."""
    made = {}
    for case in CASES:
        path = str(tiny_package(*case)[0])
        made[case] = edgeseq.load(path, provider="cpu", threads=1), edgeseq.load(path, provider="cuda")
    return made


def _one_step(engine, ids: list[int]):
    """The encoder's state for `ids` after one decoder pass, and that pass's logits."""
    src = np.array([ids], np.int64)
    state = engine.runner.encode(src, np.ones_like(src))
    start = np.array([[engine.manifest.special.decoder_start]], np.int64)
    return state, engine.runner.step(start, state, engine.runner.new_cache(1, 4))[0, -1]


def test_on_cpu_the_decoder_reads_the_encoder_output_where_it_is(tiny_package):
    engine = edgeseq.load(str(tiny_package("t5", "int8")[0]), threads=1)
    state = _one_step(engine, SOURCES[0])[0]
    assert engine.runner.device is None
    assert state.feeds["cross_key.0"] is state.cross[0]


@needs_cuda
@pytest.mark.parametrize("case", CASES)
def test_on_cuda_the_encoder_output_goes_to_gpu_memory_once_per_call(case, engines):
    gpu = engines[case][1]
    state = _one_step(gpu, SOURCES[0])[0]
    assert gpu.runner.device == "cuda"
    for name in ("cross_key.0", "cross_value.0", "encoder_bias"):
        assert state.feeds[name].device_name() == "cuda"


@needs_cuda
@pytest.mark.parametrize("case", CASES)
def test_both_graphs_run_on_cuda_first(case, engines):
    providers = engines[case][1].providers()
    assert providers["encoder"][0] == "CUDAExecutionProvider"
    assert providers["decoder"][0] == "CUDAExecutionProvider"


HEAVY = {"MatMul", "MatMulNBits", "MultiHeadAttention", "LayerNormalization",
         "SimplifiedLayerNormalization", "Gemm"}


@needs_cuda
@pytest.mark.parametrize("case", CASES)
def test_every_matrix_product_attention_and_norm_runs_on_cuda(case, engines):
    for graph, ops in engines[case][1].placement().items():
        heavy = {op: providers for op, providers in ops.items() if op in HEAVY}
        assert heavy, graph
        assert all(set(providers) == {"CUDAExecutionProvider"} for providers in heavy.values()), \
            (graph, heavy)


@needs_cuda
@pytest.mark.parametrize("family", ["t5", "bart", "marian"])
def test_fp32_logits_match_cpu_within_the_export_tolerance(family, engines):
    cpu, gpu = engines[family, "fp32"]
    for ids in SOURCES:
        a, b = _one_step(cpu, ids)[1], _one_step(gpu, ids)[1]
        assert np.abs(a - b).max() <= FP32_TOLERANCE * np.abs(a).max()


@needs_cuda
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("draft", ["input", "ngram", "layers"])
def test_greedy_speculation_on_cuda_is_identical_to_plain_greedy_on_cuda(case, draft, engines):
    gpu = engines[case][1]
    gpu.generate(SOURCES[0], max_new_tokens=16)  # gives the n-gram cache history
    for ids in SOURCES:
        plain = gpu.generate(ids, max_new_tokens=16)
        fast = gpu.generate(ids, draft=draft, max_draft=5, max_new_tokens=16)
        assert fast.token_ids == plain.token_ids


@needs_cuda
@pytest.mark.parametrize("family", ["t5", "bart", "marian"])
@pytest.mark.parametrize("draft_on", ["cuda", "cpu"])
def test_a_draft_model_on_either_provider_keeps_cuda_greedy_output(family, draft_on, engines):
    # The int8 package drafts for the fp32 one: mostly right, sometimes wrong.
    gpu = engines[family, "fp32"][1]
    drafter = engines[family, "int8"][1 if draft_on == "cuda" else 0]
    for ids in SOURCES:
        plain = gpu.generate(ids, max_new_tokens=16)
        fast = gpu.generate(ids, draft=drafter, max_draft=5, max_new_tokens=16)
        assert fast.token_ids == plain.token_ids


@needs_cuda
@pytest.mark.parametrize("case", CASES)
def test_a_batch_on_cuda_decodes_each_row_as_alone(case, engines):
    gpu = engines[case][1]
    together = gpu.generate(SOURCES, max_new_tokens=12)
    assert [r.token_ids for r in together] == [gpu.generate(ids, max_new_tokens=12).token_ids
                                               for ids in SOURCES]


def test_an_integer_gemm_encoder_on_cuda_is_named_with_the_export_option_that_avoids_it(
        tiny_package, tmp_path):
    from edgeseq.runtime.integer_gemm import cpu_kernels_on_gpu, uses_integer_gemm
    int8_gemm = uses_integer_gemm(tiny_package("t5", "int8")[0] / "encoder.onnx")
    warning = cpu_kernels_on_gpu("cuda", int8_gemm)
    assert warning is not None and "--int8-encoder blocks" in warning
    assert cpu_kernels_on_gpu(None, int8_gemm) is None  # host memory: the CPU runs it anyway
    fp32_gemm = uses_integer_gemm(tiny_package("t5", "fp32")[0] / "encoder.onnx")
    assert cpu_kernels_on_gpu("cuda", fp32_gemm) is None


def test_int8_encoder_blocks_exports_an_encoder_the_cuda_provider_runs(tiny_checkpoint, tmp_path):
    import onnx

    from edgeseq.export import export_checkpoint
    export_checkpoint(tiny_checkpoint("bart"), tmp_path / "pkg", quant="int8", validate=False,
                      int8_encoder="blocks")
    ops = {n.op_type for n in onnx.load(tmp_path / "pkg" / "encoder.onnx",
                                        load_external_data=False).graph.node}
    assert "MatMulNBits" in ops and "MatMulIntegerToFloat" not in ops
    engine = edgeseq.load(str(tmp_path / "pkg"), threads=1)
    assert engine.generate(SOURCES[0], max_new_tokens=4).token_ids


def test_the_cuda_check_says_what_it_needs_where_cuda_is_missing(capsys):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA is here: the check would run")
    from bench.cuda_check import main
    assert main(["--packages", "default"]) == 2
    assert "install onnxruntime-gpu" in capsys.readouterr().out


def test_cli_export_takes_the_int8_encoder_choice(tiny_checkpoint, tmp_path, capsys):
    import onnx

    from edgeseq.cli import main
    assert main(["export", str(tiny_checkpoint("t5")), str(tmp_path / "pkg"), "--no-validate",
                 "--int8-encoder", "blocks"]) == 0
    ops = {n.op_type for n in onnx.load(tmp_path / "pkg" / "encoder.onnx",
                                        load_external_data=False).graph.node}
    assert "MatMulNBits" in ops
