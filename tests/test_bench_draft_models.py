"""bench.draft_models: a checkpoint's first decoder layers as a draft package of their own."""
from __future__ import annotations

import numpy as np
import pytest

import edgeseq
from bench.draft_models import draft_package
from edgeseq.runtime.decoder import LayerPlan


def _last_logits(engine, source: list[int], tokens: list[int], plan=None) -> np.ndarray:
    runner = engine.runner
    ids = np.array([source])
    cache = runner.new_cache(1, len(tokens))
    return runner.step(np.array([tokens]), runner.encode(ids, np.ones_like(ids)), cache, plan)[0]


@pytest.mark.parametrize("family", ["t5", "bart"])
def test_a_draft_package_computes_the_targets_early_exit(family, tiny_checkpoint, tmp_path):
    """The target's encoder and first decoder layer, exported alone, give the logits the
    target's own exit after that layer gives (through the same final norm and head)."""
    target_dir = tmp_path / "target"
    from edgeseq.export import export_checkpoint
    export_checkpoint(tiny_checkpoint(family), target_dir, quant="fp32")
    draft = edgeseq.load(str(draft_package(tiny_checkpoint(family), tmp_path / "draft", 1,
                                           quant="fp32")), threads=1)
    target = edgeseq.load(str(target_dir), threads=1)
    assert draft.arch.decoder_layers == 1 and target.arch.decoder_layers == 3
    source, tokens = [5, 9, 14, 2, 30], [target.manifest.special.decoder_start, 7, 11, 40]
    exit_1 = _last_logits(target, source, tokens, LayerPlan.first(1, 3))
    np.testing.assert_allclose(_last_logits(draft, source, tokens), exit_1, atol=1e-4)
    assert not np.allclose(_last_logits(target, source, tokens), exit_1, atol=1e-2)  # not the full model's


def test_a_draft_keeps_fewer_layers_than_its_checkpoint(tiny_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="decoder_layers must be 1..2"):
        draft_package(tiny_checkpoint("t5"), tmp_path / "draft", 3)


def test_a_draft_for_a_gpu_keeps_block_quantized_encoder_products(tiny_checkpoint, tmp_path):
    """--int8-encoder blocks, as for the target: the CUDA provider has no integer GEMM."""
    import onnx
    out = draft_package(tiny_checkpoint("t5"), tmp_path / "draft", 1, int8_encoder="blocks")
    ops = {n.op_type for n in onnx.load(str(out / "encoder.onnx"), load_external_data=False).graph.node}
    assert "MatMulNBits" in ops and "MatMulIntegerToFloat" not in ops


def test_a_draft_package_never_replaces_its_checkpoint_or_other_files(tiny_checkpoint, tmp_path):
    import shutil

    from edgeseq.errors import ExportError
    checkpoint = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint("t5"), checkpoint)
    with pytest.raises(ExportError, match="would replace the checkpoint"):
        draft_package(checkpoint, checkpoint, 1)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("precious")
    with pytest.raises(ExportError, match="thesis.txt"):
        draft_package(checkpoint, tmp_path / "mine", 1)
    (tmp_path / "d-hf").mkdir()
    (tmp_path / "d-hf" / "notes.txt").write_text("precious")
    with pytest.raises(ExportError, match="notes.txt, which this script does not write"):
        draft_package(checkpoint, tmp_path / "d", 1)
    assert (tmp_path / "mine" / "thesis.txt").is_file() and (tmp_path / "d-hf" / "notes.txt").is_file()
    assert (checkpoint / "config.json").is_file()
