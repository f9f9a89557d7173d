"""The copy bias: editing models score the source token that copying would write next
higher by a fixed amount, in every decoding mode, and speculation stays exact with it."""
from __future__ import annotations

import numpy as np
import pytest

import edgeseq
from edgeseq.errors import OptionsError
from edgeseq.runtime.logits import ScoreRules
from edgeseq.runtime.source_align import SourceAligner

START = 0
SOURCES = [[5, 9, 13, 22, 40, 7, 2], [30, 31, 8, 2], [11, 60, 61, 62, 63, 64, 65, 66, 67, 2]]
CASES = [(f, q) for f in ("t5", "bart", "marian") for q in ("fp32", "int8")]


def test_the_aligner_proposes_what_copying_the_source_writes_next():
    aligner = SourceAligner([[10, 11, 12, 10, 11, 13, 2]])
    assert aligner.next_token(0, [START]) == 10                  # nothing written: the first
    assert aligner.next_token(0, [START, 10, 11]) == 12          # "10 11" first occurs at the start
    assert aligner.next_token(0, [START, 7, 7, 7, 10, 11]) == 13  # ... and nearer the length later
    assert aligner.next_token(0, [START, 10, 99, 12]) == 10      # an edit: the last token re-anchors
    assert aligner.next_token(0, [START, 99]) is None            # nothing of the source: no bias
    assert aligner.next_token(0, [START, 13]) == 2               # the source's end comes next


def test_beams_of_a_source_share_its_alignment():
    aligner = SourceAligner([[5, 6, 2], [7, 8, 2]], copies=2)
    assert [aligner.next_token(row, [START]) for row in range(4)] == [5, 5, 7, 7]


def test_the_biased_choice_is_the_argmax_of_the_biased_scores_bit_for_bit():
    rng = np.random.default_rng(0)
    source = rng.integers(3, 40, 12).tolist()
    rules = ScoreRules(eos=1, min_new_tokens=0, max_new_tokens=20, copy_bias=0.75,
                       aligner=SourceAligner([source]))
    for _ in range(500):
        sequence = [START] + rng.integers(3, 40, rng.integers(0, 6)).tolist()
        scores = rng.standard_normal(40).astype(np.float32)
        copy = rules.aligner.next_token(0, sequence)
        if copy is not None and rng.random() < 0.5:  # a tie once biased, on either side
            other = int(rng.integers(3, 40))
            scores[other] = np.float32(scores[copy]) + np.float32(0.75)
            scores[other] = scores.max()
        expected = rules.apply(scores.copy()[None], 0, [sequence]).argmax(axis=-1)[0]
        assert rules.biased_top(scores, int(scores.argmax()), 0, sequence) == expected


@pytest.fixture(scope="module")
def engines(tiny_package):
    return {case: edgeseq.load(str(tiny_package(*case)[0]), threads=1) for case in CASES}


def _ending_in_eos(engine, ids: list[int]) -> list[int]:
    return ids[:-1] + [engine.manifest.special.eos]  # as a tokenizer's sources end


def test_a_large_copy_bias_copies_the_input(engines):
    engine = engines["t5", "fp32"]
    for ids in SOURCES:
        ids = _ending_in_eos(engine, ids)
        out = engine.generate(ids, max_new_tokens=16, copy_bias=1e4, no_repeat_ngram_size=0)
        assert out.token_ids == ids


def _biases_that_change_plain_output(engine) -> list[float]:
    """Biases at which the plain output differs from the unbiased one without copying
    every source whole: the model's own choices and the bias each decide some tokens.
    (The tiny random models' logits span from about 1 to about 50.)"""
    unbiased = [engine.generate(ids, max_new_tokens=16).token_ids for ids in SOURCES]
    found = []
    for bias in (0.05, 0.2, 1.0, 4.0, 16.0, 64.0):
        outs = [engine.generate(ids, max_new_tokens=16, copy_bias=bias).token_ids for ids in SOURCES]
        if outs != unbiased and any(out[:len(ids)] != ids for out, ids in zip(outs, SOURCES)):
            found.append(bias)
    return found


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("draft", ["input", "ngram", "layers"])
def test_greedy_speculation_with_a_copy_bias_equals_plain_greedy_with_it(case, draft, engines):
    engine = engines[case]
    biases = _biases_that_change_plain_output(engine)
    assert biases, "no bias changed this model's output: the test would prove nothing"
    for bias in biases[:2]:
        for ids in SOURCES:
            for min_new in (0, 10):
                kw = dict(max_new_tokens=16, min_new_tokens=min_new, copy_bias=bias)
                plain = engine.generate(ids, **kw)
                fast = engine.generate(ids, draft=draft, max_draft=5, **kw)
                assert fast.token_ids == plain.token_ids
        batch = engine.generate(SOURCES, draft=draft, max_draft=5, max_new_tokens=16, copy_bias=bias)
        assert [r.token_ids for r in batch] == \
            [engine.generate(ids, max_new_tokens=16, copy_bias=bias).token_ids for ids in SOURCES]


def test_beam_search_sampling_and_early_exit_read_the_bias_too(engines):
    engine = engines["bart", "fp32"]
    ids, kw = _ending_in_eos(engine, SOURCES[2]), dict(max_new_tokens=12, no_repeat_ngram_size=0)
    assert engine.generate(ids, num_beams=3, copy_bias=1e4, **kw).token_ids == ids
    assert engine.generate(ids, do_sample=True, seed=3, copy_bias=1e4, **kw).token_ids == ids
    assert engine.generate(ids, exit_threshold=0.5, copy_bias=1e4, **kw).token_ids == ids
    sampled = engine.generate(ids, do_sample=True, seed=3, draft="input", copy_bias=1e4, **kw)
    assert sampled.token_ids == ids  # speculative sampling's target distribution has it


def test_the_package_default_applies_and_an_option_overrides_it(engines):
    engine = engines["marian", "fp32"]
    ids, kw = _ending_in_eos(engine, SOURCES[0]), dict(max_new_tokens=16, no_repeat_ngram_size=0)
    unbiased = engine.generate(ids, **kw).token_ids
    engine.manifest.generation["copy_bias"] = 1e4
    try:
        assert engine.generate(ids, **kw).token_ids == ids
        assert engine.generate(ids, copy_bias=0.0, **kw).token_ids == unbiased
    finally:
        del engine.manifest.generation["copy_bias"]
    for bad in (-1.0, 1e39):  # 1e39 would overflow float32 scores
        with pytest.raises(OptionsError, match="copy_bias must be in 0..1e"):
            engine.generate(ids, copy_bias=bad)


def test_export_carries_the_checkpoints_copy_bias_into_the_package(tiny_checkpoint, tmp_path):
    import shutil
    from transformers import GenerationConfig
    from edgeseq.export import export_checkpoint
    src = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint("t5"), src)
    config = GenerationConfig.from_pretrained(src)
    config.copy_bias = 1e4
    config.save_pretrained(src)
    export_checkpoint(src, tmp_path / "pkg", quant="fp32", validate=False)
    engine = edgeseq.load(str(tmp_path / "pkg"), threads=1)
    assert engine.manifest.generation["copy_bias"] == 1e4
    ids = _ending_in_eos(engine, SOURCES[1])
    assert engine.generate(ids, max_new_tokens=8, no_repeat_ngram_size=0).token_ids == ids


def test_the_rerank_with_a_copy_bias_keeps_input_drafting_exact(engines):
    engine = engines["t5", "int8"]
    bias = _biases_that_change_plain_output(engine)[0]
    for ids in SOURCES:
        kw = dict(max_new_tokens=16, copy_bias=bias, rerank_source=True)
        plain = engine.generate(ids, **kw)
        fast = engine.generate(ids, draft="input", **kw)
        assert (fast.token_ids, fast.source_kept) == (plain.token_ids, plain.source_kept)
