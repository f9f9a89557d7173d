"""`Engine.placement()` and `edgeseq info --placement` say which execution provider ran
each operator of each graph (what get_providers() cannot: an accelerator leaves the
operators it lacks to the CPU)."""
from __future__ import annotations

import json

import edgeseq
from edgeseq.cli import main
from edgeseq.runtime.placement import summary


def test_on_cpu_every_operator_of_both_graphs_runs_on_the_cpu_provider():
    engine = edgeseq.load("default", threads=1, fp32_decoder_products=False)
    placement = engine.placement()
    assert set(placement) == {"encoder", "decoder"}
    for ops in placement.values():
        assert {p for providers in ops.values() for p in providers} == {"CPUExecutionProvider"}
    # the profile counts real kernels: 4 layers' projections, MLPs and the head
    assert placement["decoder"]["MatMulNBits"]["CPUExecutionProvider"] >= 4 * 7 + 1
    assert placement["encoder"]["MultiHeadAttention"]["CPUExecutionProvider"] == 3


def test_a_decoder_multiplying_in_fp32_is_profiled_as_it_runs():
    engine = edgeseq.load("default", threads=1, fp32_decoder_products=True)
    decoder = engine.placement()["decoder"]
    assert "MatMulNBits" not in decoder
    assert sum(decoder.get(op, {}).get("CPUExecutionProvider", 0)
               for op in ("MatMul", "FusedMatMul", "Gemm")) >= 4 * 7 + 1


def test_profiling_uses_copies_and_leaves_the_engine_as_it_was():
    engine = edgeseq.load("default", threads=1)
    before = engine.runner.encoder, engine.runner.decoder
    first = engine.generate("She go to school.").token_ids
    engine.placement()
    assert (engine.runner.encoder, engine.runner.decoder) == before
    assert engine.generate("She go to school.").token_ids == first


def test_a_whisper_package_is_profiled_from_audio_features(tmp_path):
    from test_whisper import _build_tiny  # skips without torch and transformers
    from edgeseq.export import export_checkpoint
    _build_tiny(tmp_path / "hf")
    export_checkpoint(tmp_path / "hf", tmp_path / "pkg", quant="int8")
    placement = edgeseq.load(str(tmp_path / "pkg"), threads=1,
                             fp32_decoder_products=False).placement()
    assert "Conv" in placement["encoder"]  # the audio front end ran
    assert placement["decoder"]["MatMulNBits"]["CPUExecutionProvider"] > 0


def test_the_summary_names_the_operators_left_to_another_provider():
    ops = {"MatMulNBits": {"CUDAExecutionProvider": 28}, "Slice": {"CPUExecutionProvider": 2},
           "Add": {"CUDAExecutionProvider": 20, "CPUExecutionProvider": 1}}
    assert summary("decoder", ops) == ("decoder: 48 on CUDAExecutionProvider, 3 on "
                                       "CPUExecutionProvider; not on CUDAExecutionProvider: "
                                       "Add (CPUExecutionProvider), Slice (CPUExecutionProvider)")


def test_cli_info_placement_prints_and_returns_it(capsys):
    assert main(["info", "default", "--placement"]) == 0
    out = capsys.readouterr().out
    assert "operators, encoder: " in out and "operators, decoder: " in out
    assert main(["info", "default", "--placement", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["placement"]["decoder"]["If"] == {"CPUExecutionProvider": 5}
