"""Exported fp32 packages reproduce transformers' PyTorch outputs on the same weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import edgeseq
from tiny_models import FAMILIES

SOURCES = [[5, 9, 13, 22, 40, 7, 2], [30, 31, 8, 2], [11, 60, 61, 62, 63, 64, 65, 66, 67, 2]]


def _strip(tokens: list[int], pad: int) -> list[int]:
    """transformers pads finished rows; edgeseq stops. (T5's pad is also a real token.)"""
    tokens = list(tokens)
    while tokens and tokens[-1] == pad:
        tokens.pop()
    return tokens


def _hf(family_dir, ids, **kw) -> list[int]:
    import transformers as tf
    model = tf.AutoModelForSeq2SeqLM.from_pretrained(family_dir).eval()
    with torch.no_grad():
        out = model.generate(input_ids=torch.tensor([ids]), do_sample=False, **kw)[0, 1:].tolist()
    return _strip(out, model.config.pad_token_id)


@pytest.mark.parametrize("family", FAMILIES)
def test_fp32_logits_match_pytorch_within_tolerance(family, tiny_package):
    _, report = tiny_package(family, "fp32")
    v = report.validation
    assert v["decoder_tolerance"] == 1e-3 * max(1.0, v["reference_logit_scale"])
    assert v["decoder_max_abs_diff"] <= v["decoder_tolerance"]
    assert v["decoder_cached_max_abs_diff"] <= v["decoder_tolerance"]
    assert v["encoder_max_abs_diff"] <= v["encoder_tolerance"]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("beams", [1, 3])
def test_greedy_and_beam_tokens_equal_transformers_generate(family, beams, tiny_checkpoint,
                                                            tiny_package):
    engine = edgeseq.load(str(tiny_package(family, "fp32")[0]), threads=1)
    pad = engine.manifest.special.pad
    for ids in SOURCES:
        for min_new in (0, 12):
            kw = dict(max_new_tokens=16, min_new_tokens=min_new, num_beams=beams)
            ours = _strip(engine.generate(ids, **kw).token_ids, pad)
            assert ours == _hf(tiny_checkpoint(family), ids, **kw)


@pytest.mark.parametrize("family", ["t5v11", "bart"])
def test_with_cache_equals_without_cache(family, tiny_package):
    """Cached greedy decoding == recomputing the whole prefix every step."""
    engine = edgeseq.load(str(tiny_package(family, "fp32")[0]), threads=1)
    runner, start = engine.runner, engine.manifest.special.decoder_start
    ids = np.array([SOURCES[0]]), np.ones((1, len(SOURCES[0])), np.int64)
    state = runner.encode(*ids)
    prefix = [start]
    for _ in range(12):
        cache = runner.new_cache(1, len(prefix))
        logits = runner.step(np.array([prefix]), state, cache)[0, -1]
        logits[engine.manifest.special.eos] = -np.inf  # as min_new_tokens does below
        prefix.append(int(logits.argmax()))
    cached = engine.generate(SOURCES[0], max_new_tokens=12, min_new_tokens=12).token_ids
    assert cached == prefix[1:]


@pytest.mark.parametrize("family", ["t5", "marian"])
@pytest.mark.parametrize("beams", [1, 2])
def test_batch_results_equal_one_by_one(family, beams, tiny_package):
    engine = edgeseq.load(str(tiny_package(family, "fp32")[0]), threads=1)
    kw = dict(max_new_tokens=10, num_beams=beams)
    batch = engine.generate(SOURCES, **kw)
    assert [r.token_ids for r in batch] == [engine.generate(s, **kw).token_ids for s in SOURCES]


def test_the_embedding_gather_reads_the_tied_head_bytes_under_its_own_initializer(tiny_package):
    """onnxruntime frees an initializer's mapping after prepacking it only when no other
    node reads it; the gather therefore reads the same bytes of weights.bin through an
    alias, and the package still stores them once."""
    import onnx
    package, _ = tiny_package("t5", "int8")
    decoder = onnx.load(str(package / "decoder.onnx"), load_external_data=False)
    where = {t.name: {e.key: e.value for e in t.external_data} for t in decoder.graph.initializer}

    from edgeseq.export.row_invariant import all_nodes
    gathered = {n.input[0] for n in all_nodes(decoder.graph) if n.op_type == "Gather"} & set(where)
    multiplied = {n.input[1] for n in all_nodes(decoder.graph) if n.op_type == "MatMulNBits"}
    assert gathered and not gathered & multiplied
    head = "embed.tokens.w_int8"
    assert head in multiplied and f"{head}.rows" in gathered
    assert where[f"{head}.rows"]["offset"] == where[head]["offset"]


@pytest.mark.parametrize("family", ["t5", "bart"])
@pytest.mark.parametrize("beams", [1, 3])
def test_no_repeat_ngram_tokens_equal_transformers_generate(family, beams, tiny_checkpoint, tiny_package):
    engine = edgeseq.load(str(tiny_package(family, "fp32")[0]), threads=1)
    pad = engine.manifest.special.pad
    for ids in SOURCES:
        kw = dict(max_new_tokens=16, min_new_tokens=16, num_beams=beams, no_repeat_ngram_size=2)
        ours = _strip(engine.generate(ids, **kw).token_ids, pad)
        assert ours == _hf(tiny_checkpoint(family), ids, **kw)


def test_the_checkpoints_no_repeat_default_travels_in_the_package(tiny_checkpoint, tmp_path):
    import shutil
    import transformers as tf
    from edgeseq.export import export_checkpoint
    src = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint("t5"), src)
    config = tf.GenerationConfig.from_pretrained(src)
    config.no_repeat_ngram_size = 2
    config.save_pretrained(src)
    export_checkpoint(src, tmp_path / "pkg", quant="fp32", validate=False)
    engine = edgeseq.load(str(tmp_path / "pkg"), threads=1)
    assert engine.manifest.generation["no_repeat_ngram_size"] == 2
    kw = dict(max_new_tokens=16, min_new_tokens=16)
    default = engine.generate(SOURCES[0], **kw).token_ids
    assert default == engine.generate(SOURCES[0], no_repeat_ngram_size=2, **kw).token_ids
    pairs = list(zip(default, default[1:]))
    assert len(pairs) == len(set(pairs))  # no bigram twice
