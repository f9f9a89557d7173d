"""rerank_source: the unchanged input is a second candidate, kept when the model scores it
at least as high per token as the decoded output (runtime/rerank.py). The decision is
checked on the shipped grammar model, where both outcomes occur; scoring against PyTorch
on a tiny random T5."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import edgeseq
from edgeseq.errors import OptionsError
from edgeseq.runtime.rerank import mean_log_probs

# greedy without the copy bias: "someone likes music and someone is not."
DROPS_HALF = ("someone likes music and someone like science, and some one is talent on ballet "
              "while someone is not.")
UNBIASED = {"copy_bias": 0.0}  # the model's own greedy output, which DROPS_HALF needs
SENTENCES = [
    "I has went to the store yesterday.", "She don't like apples.",
    DROPS_HALF,
    "Such unwritten law is very furious, but our world is the furious.",  # greedy: "furous"
    "we goes to school every days", "People who lives in cities are busy.",
    "It was a good news for us.",
]
SOURCES = [[5, 9, 13, 22, 40, 7, 1], [30, 31, 8, 1], [11, 60, 61, 62, 63, 64, 65, 1]]


def _torch_mean_log_prob(model, source: list[int], target: list[int]) -> float:
    with torch.no_grad():
        out = model(input_ids=torch.tensor([source]), labels=torch.tensor([target]))
    logp = torch.log_softmax(out.logits[0], -1).gather(1, torch.tensor(target)[:, None])
    return float(logp.mean())


def _fresh_mean_log_prob(engine, source: list[int], target: list[int]) -> float:
    """Teacher-forced scoring on a cache of its own (not the generation's session)."""
    runner, sp = engine.runner, engine.manifest.special
    state = runner.encode(np.array([source]), np.ones((1, len(source)), np.int64))
    logits = runner.step(np.array([[sp.decoder_start] + target[:-1]]), state,
                         runner.new_cache(1, len(target)))[0]
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    return float(logp[np.arange(len(target)), target].mean())


@pytest.fixture(scope="module")
def t5(tiny_checkpoint, tiny_package):
    import transformers as tf
    model = tf.AutoModelForSeq2SeqLM.from_pretrained(tiny_checkpoint("t5")).eval()
    return edgeseq.load(str(tiny_package("t5", "fp32")[0]), threads=1), model


@pytest.fixture(scope="module")
def grammar():
    return edgeseq.load("default", threads=1)


def test_teacher_forced_scores_of_a_padded_batch_equal_pytorchs(t5):
    engine, model = t5
    sp = engine.manifest.special
    source = SOURCES[0]
    targets = [[7, 8, 9, 1], [40, 1], [3, 4, 5, 6, 7, 8, 9, 10, 1]]
    session = engine._session([source] * len(targets), 1, engine._options({}))
    ours = mean_log_probs(session, sp.decoder_start, targets, sp.pad)
    theirs = [_torch_mean_log_prob(model, source, t) for t in targets]
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_the_input_is_kept_exactly_when_the_model_scores_it_at_least_as_high(grammar):
    kept = 0
    for text in SENTENCES:
        source = grammar.codec.encode(text)
        plain = grammar.generate(text, rerank_source=False)
        chosen = grammar.generate(text, rerank_source=True)
        prefers_source = (_fresh_mean_log_prob(grammar, source, source)
                          >= _fresh_mean_log_prob(grammar, source, plain.token_ids))
        assert chosen.source_kept == (prefers_source and source != plain.token_ids)
        assert chosen.token_ids == (source if chosen.source_kept else plain.token_ids)
        kept += chosen.source_kept
    assert 0 < kept < len(SENTENCES)  # both outcomes are exercised


def test_batches_and_beams_choose_as_one_by_one(grammar):
    for beams in (1, 3):
        kw = dict(num_beams=beams, rerank_source=True)
        batch = grammar.generate(SENTENCES, **kw)
        single = [grammar.generate(s, **kw) for s in SENTENCES]
        assert [(r.token_ids, r.source_kept) for r in batch] == \
               [(r.token_ids, r.source_kept) for r in single]
        assert any(r.source_kept for r in batch) or beams > 1


def test_input_drafting_scores_both_candidates_on_the_way_and_chooses_as_plain(grammar, monkeypatch):
    """Its first verify pass teacher-forces the whole source and every emitted token's
    logits come from a verify pass: no scoring pass is left to run."""
    import edgeseq.runtime.rerank as rerank
    plain = [grammar.generate(s, rerank_source=True) for s in SENTENCES]

    def no_scoring_pass(*args, **kwargs):
        raise AssertionError("a teacher-forced scoring pass ran")
    monkeypatch.setattr(rerank, "mean_log_probs", no_scoring_pass)
    drafted = [grammar.generate(s, rerank_source=True, draft="input") for s in SENTENCES]
    assert [(r.token_ids, r.source_kept) for r in drafted] == \
           [(r.token_ids, r.source_kept) for r in plain]
    batch = grammar.generate(SENTENCES, rerank_source=True, draft="input")
    assert [(r.token_ids, r.source_kept) for r in batch] == [(r.token_ids, r.source_kept) for r in drafted]


@pytest.mark.parametrize("draft", ["layers", "ngram"])
def test_a_call_whose_drafting_is_off_decodes_and_reranks_as_plain_greedy(grammar, draft,
                                                                           monkeypatch):
    """Off for the call, a drafter costs nothing: plain greedy's loop, and rerank_source's
    one scoring pass after it, no logits held pass by pass."""
    import edgeseq.runtime.rerank as rerank
    plain = [grammar.generate(s, rerank_source=True) for s in SENTENCES]
    monkeypatch.setattr(type(grammar), "_drafting_off", lambda self, opts, batch: True)

    def no_held_logits(*args, **kwargs):
        raise AssertionError("a pass's logits were held for the rerank")
    monkeypatch.setattr(rerank.PassScores, "add_pass", no_held_logits)
    off = [grammar.generate(s, rerank_source=True, draft=draft) for s in SENTENCES]
    assert [(r.token_ids, r.source_kept) for r in off] == \
           [(r.token_ids, r.source_kept) for r in plain]
    assert any(r.source_kept for r in off)


def test_scores_seen_while_drafting_equal_teacher_forced_ones(t5, monkeypatch):
    import edgeseq.runtime.engine as engine_module
    engine, _ = t5
    seen = []
    real = engine_module.prefer_source
    monkeypatch.setattr(engine_module, "prefer_source",
                        lambda *a, **kw: seen.append(kw["seen"]) or real(*a, **kw))
    for source in SOURCES:
        result = engine.generate(source, max_new_tokens=12, rerank_source=True, draft="input")
        if result.source_kept:
            output = engine.generate(source, max_new_tokens=12, rerank_source=False).token_ids
        else:
            output = result.token_ids
        np.testing.assert_allclose(seen[-1].known(0), (_fresh_mean_log_prob(engine, source, source),
                                                       _fresh_mean_log_prob(engine, source, output)),
                                   atol=1e-5)


def test_a_source_longer_than_the_output_may_be_is_not_a_candidate(grammar):
    text = DROPS_HALF
    assert grammar.generate(text, rerank_source=True, **UNBIASED).source_kept
    limit = len(grammar.codec.encode(text)) - 1
    short = grammar.generate(text, max_new_tokens=limit, rerank_source=True, **UNBIASED)
    assert not short.source_kept and len(short.token_ids) <= limit


def test_stream_yields_what_generate_returns(grammar):
    for text in SENTENCES[:4]:
        pieces = list(grammar.stream(text, rerank_source=True))
        assert "".join(pieces) == grammar.generate(text, rerank_source=True).text


def test_the_packages_default_applies_to_greedy_but_not_to_sampling(tiny_checkpoint, tmp_path):
    from transformers import GenerationConfig
    from edgeseq.export import export_checkpoint
    import shutil
    src = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint("t5"), src)
    config = GenerationConfig.from_pretrained(src)
    config.rerank_source = True
    config.save_pretrained(src)
    export_checkpoint(src, tmp_path / "pkg", quant="fp32", validate=False)
    engine = edgeseq.load(str(tmp_path / "pkg"), threads=1)
    assert engine.manifest.generation["rerank_source"] is True
    for source in SOURCES:
        default = engine.generate(source, max_new_tokens=12)
        assert default.token_ids == engine.generate(source, max_new_tokens=12, rerank_source=True).token_ids
    sampled = engine.generate(SOURCES[0], max_new_tokens=12, do_sample=True, seed=3)
    assert not sampled.source_kept
    # reranking needs the whole output: stream() cannot yield pieces as they decode
    assert not engine.streams_tokens() and not engine.streams_tokens(num_beams=2)
    assert engine.streams_tokens(rerank_source=False) and engine.streams_tokens(do_sample=True)
    with pytest.raises(OptionsError, match="rerank_source"):
        engine.generate(SOURCES[0], do_sample=True, rerank_source=True)


def test_reranking_costs_one_decoder_pass(t5):
    engine, _ = t5
    plain = engine.generate(SOURCES[0], max_new_tokens=12, rerank_source=False)
    chosen = engine.generate(SOURCES[0], max_new_tokens=12, rerank_source=True)
    assert chosen.stats.decoder_passes == plain.stats.decoder_passes + 1
    assert np.isfinite(chosen.stats.total_ms)


def test_the_cli_flag_turns_reranking_on_and_off(capsys):
    import json
    from edgeseq.cli import main
    text = DROPS_HALF
    assert main(["generate", "default", text, "--rerank-source", "--copy-bias", "0", "--json"]) == 0
    kept = json.loads(capsys.readouterr().out)
    assert kept["source_kept"] and kept["text"] == text
    assert main(["generate", "default", text, "--no-rerank-source", "--copy-bias", "0"]) == 0
    assert capsys.readouterr().out.strip() != text


def test_scores_are_computed_only_when_an_output_differs_from_its_source(grammar, monkeypatch):
    from edgeseq.runtime import rerank
    normalised = []
    real = rerank.log_normaliser
    monkeypatch.setattr(rerank, "log_normaliser", lambda x: normalised.append(x.shape) or real(x))
    unchanged = "She likes apples."
    result = grammar.generate(unchanged, rerank_source=True, draft="input")
    assert result.text == unchanged and normalised == []
    edited = grammar.generate("She don't like apples.", rerank_source=True, draft="input")
    assert edited.token_ids != grammar.codec.encode("She don't like apples.") and normalised


def test_held_logits_are_scored_once_they_outgrow_their_allowance():
    from edgeseq.runtime.rerank import PassScores
    logits = np.random.default_rng(0).normal(size=(1, 4, 10)).astype(np.float32)
    emitted, live = np.array([[3, 4, 5, 6]]), np.ones((1, 4), bool)
    held = PassScores(1, held_bytes=2 * logits.nbytes)
    held.add_pass(logits, emitted, live)
    held.add_pass(logits, emitted, live)
    assert held._held and held.output_count[0] == 0  # within the allowance: unscored
    held.add_pass(logits, emitted, live)
    assert not held._held and held.output_count[0] == 12  # past it: all three scored
    at_once = PassScores(1)
    for _ in range(3):
        at_once.add_pass(logits, emitted, live)
    np.testing.assert_allclose(held.output_sum, at_once.output_sum)
