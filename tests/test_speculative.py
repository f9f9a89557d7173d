"""Speculative decoding never changes greedy output, and follows the target's
distribution when sampling."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import edgeseq
from edgeseq.errors import OptionsError
from edgeseq.runtime.draft_control import PROBE_ROUNDS, DraftController, DraftPlan
from edgeseq.runtime.drafters import CheckedDrafter, Draft, InputDrafter
from edgeseq.runtime.speculative import Speculation, SpecStats, _wanted, speculative
from scripted_drafter import SOURCES, ScriptedDrafter

# int8 decoders multiply in int8 or, dequantized at load, in fp32 (runtime/decoder_products.py)
CASES = [(f, q) for f in ("t5", "bart", "marian") for q in ("fp32", "int8", "int8/fp32-products")]


@pytest.fixture(scope="module")
def engines(tiny_package):
    def load(family, quant):
        stored, _, products = quant.partition("/")
        return edgeseq.load(str(tiny_package(family, stored)[0]), threads=1,
                            fp32_decoder_products=bool(products))
    return {case: load(*case) for case in CASES}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("draft", ["input", "ngram", "layers", "self-model"])
def test_greedy_output_is_identical_for_every_drafter(case, draft, engines):
    """As planned, and forced to draft every round (adaptive_draft=False; layers from the
    first layer, whose drafts these random models sometimes accept): across the calls
    draft tokens are accepted, and for the input and layer drafters also rejected, so
    both acceptance and the cursor's rollback are checked, not only calls that ended
    up drafting nothing."""
    engine = engines[case]
    drafter = engine if draft == "self-model" else draft
    engine.generate(SOURCES[0], max_new_tokens=16)  # gives the n-gram cache history
    drafted = accepted = 0
    for forced in ({}, {"adaptive_draft": False}):
        if forced and draft == "layers":
            forced["exit_layer"] = 1
        for ids in SOURCES:
            for min_new in (0, 14):
                kw = dict(max_new_tokens=16, min_new_tokens=min_new)
                plain = engine.generate(ids, **kw)
                fast = engine.generate(ids, draft=drafter, max_draft=5, **forced, **kw)
                assert fast.token_ids == plain.token_ids
                figures = fast.stats.speculation
                assert figures["verify_passes"] <= len(plain.token_ids)
                drafted, accepted = drafted + figures["drafted"], accepted + figures["accepted"]
    assert accepted > 0
    if draft in ("input", "layers"):
        assert drafted > accepted


def test_fixed_exit_layer_and_confidence_stop_stay_exact(engines):
    engine = engines["bart", "int8"]
    for exit_layer in (1, 2):
        for confidence in (0.0, 0.6):
            kw = dict(max_new_tokens=12, min_new_tokens=12)
            fast = engine.generate(SOURCES[2], draft="layers", exit_layer=exit_layer,
                                   draft_confidence=confidence, adaptive_draft=False, **kw)
            assert fast.token_ids == engine.generate(SOURCES[2], **kw).token_ids
            assert fast.stats.layers_per_pass < engine.arch.decoder_layers


@pytest.mark.parametrize("case", CASES)
def test_drafting_with_a_skip_set_stays_exact_and_runs_fewer_layers(case, engines):
    engine = engines[case]
    kw = dict(max_new_tokens=12, min_new_tokens=12)
    for skip in ((0,), (1,)):
        for ids in SOURCES:
            fast = engine.generate(ids, draft="layers", draft_skip=skip, adaptive_draft=False,
                                   max_draft=3, **kw)
            assert fast.token_ids == engine.generate(ids, **kw).token_ids
            assert fast.stats.layers_per_pass < engine.arch.decoder_layers  # drafts skipped one


def test_bad_skip_sets_are_named(engines):
    engine = engines["t5", "fp32"]
    layers = engine.arch.decoder_layers
    with pytest.raises(OptionsError, match="draft_skip only applies with draft='layers'"):
        engine.generate([5, 6], draft="input", draft_skip=(1,))
    with pytest.raises(OptionsError, match="exit_layer or draft_skip"):
        engine.generate([5, 6], draft="layers", exit_layer=1, draft_skip=(1,))
    with pytest.raises(OptionsError, match="distinct layer indices"):
        engine.generate([5, 6], draft="layers", draft_skip=(1, 1))
    with pytest.raises(OptionsError, match="keep at least one"):
        engine.generate([5, 6], draft="layers", draft_skip=tuple(range(layers)))
    with pytest.raises(OptionsError, match="keep at least one"):
        engine.generate([5, 6], draft="layers", draft_skip=(layers,))


def _run(engine, rows, drafter, max_new, min_new=0):
    opts = dict(max_new_tokens=max_new, min_new_tokens=min_new)
    from edgeseq.runtime.options import GenerationOptions
    o = GenerationOptions(**opts)
    session = engine._session(rows, 1, o)
    stats = SpecStats()
    start = np.full(len(rows), engine.manifest.special.decoder_start, np.int64)
    control = DraftController(max_draft=8, adaptive=False)  # always verify what is drafted
    chunks = list(speculative(session, start, engine._rules(o, rows), engine.manifest.special.pad,
                              rows, Speculation(drafter, control, stats)))
    return np.concatenate(chunks, axis=1), stats


@pytest.mark.parametrize("case", [("bart", "fp32"), ("t5", "int8")])
def test_always_right_always_wrong_eos_inside_and_max_length_inside_a_draft(case, engines):
    engine = engines[case]
    eos, pad = engine.manifest.special.eos, engine.manifest.special.pad
    plain = [engine.generate(s, max_new_tokens=12).token_ids for s in SOURCES]
    script = [p + [eos] * 20 for p in plain]  # runs past EOS and past max length
    right, stats = _run(engine, SOURCES, ScriptedDrafter(script), 12)
    for row, expected in zip(right, plain):
        tokens = row.tolist()
        assert tokens[:len(expected)] == expected and set(tokens[len(expected):]) <= {pad}
    assert stats.acceptance_rate > 0.5 and stats.verify_passes < 12
    wrong, stats = _run(engine, SOURCES, ScriptedDrafter(script, wrong=True), 12)
    assert wrong.tolist() == right.tolist() and stats.accepted == 0


def test_a_callers_own_drafter_plugs_into_generate_and_stays_exact(engines):
    engine = engines["t5", "int8"]
    eos = engine.manifest.special.eos
    for ids in SOURCES:
        plain = engine.generate(ids, max_new_tokens=14)
        script = [plain.token_ids + [eos] * 20]
        right = engine.generate(ids, max_new_tokens=14, draft=ScriptedDrafter(script), max_draft=8)
        wrong = engine.generate(ids, max_new_tokens=14, draft=ScriptedDrafter(script, wrong=True),
                                max_draft=8)
        assert right.token_ids == wrong.token_ids == plain.token_ids
        assert right.stats.speculation["acceptance_rate"] > 0.5
        assert right.stats.speculation["verify_passes"] < len(plain.token_ids)


@pytest.mark.parametrize("draft", ["script", "self-model", "input"])
def test_nothing_after_the_end_counts_as_output_drafted_or_accepted(draft, engines):
    engine = engines["t5", "int8"]
    eos = engine.manifest.special.eos
    for ids in SOURCES:
        plain = engine.generate(ids, max_new_tokens=14)
        drafter = {"script": ScriptedDrafter([plain.token_ids + [eos] * 20]),  # runs on past EOS
                   "self-model": engine, "input": "input"}[draft]
        fast = engine.generate(ids, max_new_tokens=14, draft=drafter, max_draft=8)
        spec, length = fast.stats.speculation, len(plain.token_ids)
        assert fast.token_ids == plain.token_ids
        assert fast.stats.new_tokens == plain.stats.new_tokens == length
        assert spec["emitted"] == length and spec["accepted"] <= length
        assert spec["mean_tokens_per_pass"] == length / spec["verify_passes"]
        if draft != "input":  # always right: drafts reach EOS but never go past it
            passes = spec["verify_passes"]
            assert spec["drafted"] == spec["accepted"]
            # each pass emits its accepted drafts and its own token, unless its last
            # accepted draft was the EOS
            assert spec["emitted"] in (spec["accepted"] + passes, spec["accepted"] + passes - 1)


class _TailReader(ScriptedDrafter):
    """A scripted drafter (always wrong) that asks for the target's choices past a miss."""
    wants_tail = True

    def __init__(self, script):
        super().__init__(script, wrong=True)
        self.tails = []

    def tail(self, first, choices):
        self.tails.append((first, choices))


def test_a_callers_drafter_gets_the_verify_passes_choices_past_a_miss(engines):
    engine = engines["t5", "int8"]
    plain = engine.generate(SOURCES[0], max_new_tokens=14, min_new_tokens=14)
    drafter = _TailReader([plain.token_ids + [1] * 20])
    fast = engine.generate(SOURCES[0], max_new_tokens=14, min_new_tokens=14, draft=drafter,
                           max_draft=4, adaptive_draft=False)
    assert fast.token_ids == plain.token_ids
    assert drafter.tails and all(first == 1 and choices for first, choices in drafter.tails)


class _Broken:
    def __init__(self, draft):
        self.draft = draft

    def propose(self, ctx):
        return self.draft

    def update(self, drafted, accepted):
        pass


def test_a_callers_drafter_that_proposes_nonsense_is_named(engines):
    engine = engines["t5", "fp32"]
    vocab = engine.arch.vocab_size
    with pytest.raises(OptionsError, match="must return a Draft"):
        engine.generate([5, 6], draft=_Broken([[7, 8]]))
    with pytest.raises(OptionsError, match=r"integer \[batch=1, k\]"):
        engine.generate([5, 6], draft=_Broken(Draft(np.array([7, 8]))))
    with pytest.raises(OptionsError, match=f"in 0..{vocab - 1}"):
        engine.generate([5, 6], draft=_Broken(Draft(np.array([[7, vocab]]))))
    with pytest.raises(OptionsError, match="an object with propose"):
        engine.generate([5, 6], draft=object())
    sample = dict(do_sample=True, seed=0, max_new_tokens=4, adaptive_draft=False)
    uniform = np.full((1, 2, vocab), 1.0 / vocab, np.float32)
    for probs, message in ((np.full((1, 2, vocab), np.nan), "a probability distribution"),
                           (-uniform, "a probability distribution"),
                           (uniform * 2, "a probability distribution"),
                           (np.eye(vocab, dtype=np.float32)[[[1, 2]]], "probability 0"),
                           (uniform[:, :, :-1], r"\[batch, k, vocab")):
        with pytest.raises(OptionsError, match=message):
            engine.generate([5, 6], draft=_Broken(Draft(np.array([[7, 8]]), probs)), **sample)
    engine.generate([5, 6], draft=_Broken(Draft(np.array([[7, 8]]), uniform)), **sample)


def test_a_drafter_switched_off_decodes_as_plain_greedy_until_a_probe_is_due(engines, monkeypatch):
    """Off, a call decodes through plain greedy itself (no drafter is even built), its
    passes counted toward the next probe; a call in which a probe falls due drafts."""
    import edgeseq.runtime.engine as engine_module
    from edgeseq.runtime.draft_control import DraftPlan
    engine = engines["t5", "int8"]
    kw = dict(max_new_tokens=12, min_new_tokens=12, draft="layers", max_draft=3)
    plain = engine.generate(SOURCES[0], max_new_tokens=12, min_new_tokens=12)
    engine.generate(SOURCES[0], **kw)
    control = engine._controller(engine._options(kw), 1)
    control._best, control._probe_gap, control._off_rounds = DraftPlan(control._best.way, 0), 64, 0
    built = []
    make = engine_module.make_drafter
    monkeypatch.setattr(engine_module, "make_drafter", lambda *a: built.append(1) or make(*a))
    off = engine.generate(SOURCES[0], **kw)
    assert off.token_ids == plain.token_ids and not built
    assert control._off_rounds == 12 and off.stats.speculation["verify_passes"] == 12
    control._off_rounds = 60  # a probe is due within this call
    probing = engine.generate(SOURCES[0], **kw)
    assert probing.token_ids == plain.token_ids and built


def test_bad_draft_options_are_named(engines):
    engine = engines["bart", "fp32"]
    with pytest.raises(OptionsError, match="draft must be one of"):
        engine.generate([5, 6], draft="magic")
    with pytest.raises(OptionsError, match="beam search"):
        engine.generate([5, 6], draft="input", num_beams=2)
    with pytest.raises(OptionsError, match="exit_layer only applies"):
        engine.generate([5, 6], exit_layer=1)
    other = engines["t5", "fp32"]
    with pytest.raises(OptionsError, match="share the target's vocabulary"):
        engine.generate([5, 6], draft=other)


def test_a_draft_model_runs_its_encoder_only_in_calls_that_draft(tiny_package):
    path = str(tiny_package("t5", "fp32")[0])
    target, draft = edgeseq.load(path, threads=1), edgeseq.load(path, threads=1)
    encoded = []
    encode = draft.runner.encode
    draft.runner.encode = lambda *args: encoded.append(1) or encode(*args)
    target.generate(SOURCES[0], max_new_tokens=1, draft=draft)  # one token leaves nothing to draft
    assert encoded == []
    fast = target.generate(SOURCES[0], max_new_tokens=12, draft=draft, adaptive_draft=False)
    assert len(encoded) == 1 and fast.stats.speculation["drafted"] > 0
    assert fast.token_ids == target.generate(SOURCES[0], max_new_tokens=12).token_ids


def test_a_draft_model_catches_up_on_a_long_output_in_passes_the_budget_counts(engines):
    """A draft model that has not seen the output (drafting starts after plain passes)
    catches up in passes of at most max_draft + 1 tokens, the widest the memory plan
    counts, and still drafts the greedy continuation the one long pass would give."""
    from edgeseq.runtime.drafters import DraftContext, ModelDrafter
    from edgeseq.runtime.options import GenerationOptions
    engine = engines["t5", "fp32"]
    source = SOURCES[1]
    prefix = engine.generate(source, max_new_tokens=12, min_new_tokens=12).token_ids
    output = [engine.manifest.special.decoder_start] + list(prefix)
    widths = []
    step_hidden = engine.runner.step_hidden

    def recording(tokens, *args, **kwargs):
        widths.append(tokens.shape[1])
        return step_hidden(tokens, *args, **kwargs)

    def open_session():
        return engine._session([source], 1, GenerationOptions(max_new_tokens=16))

    drafter = ModelDrafter(open_session, None, False, None, max_draft=3,
                           choose=lambda logits, _: logits.argmax(axis=-1))
    engine.runner.step_hidden = recording
    try:
        draft = drafter.propose(DraftContext([source], [output], limit=3))
    finally:
        engine.runner.step_hidden = step_hidden
    assert max(widths) <= 3 + 1 and sum(widths) == len(output) + len(draft.tokens[0]) - 1
    longer = engine.generate(source, max_new_tokens=12 + len(draft.tokens[0]), min_new_tokens=15)
    assert draft.tokens[0].tolist() == list(longer.token_ids[12:])


def test_a_draft_models_passes_run_as_they_come_whatever_its_engine_would(tiny_package):
    """A draft model's tokens are proposals the target checks, so its passes never take the
    extra row of even rows (runtime/nbits_rows.py), even from an engine that would; the
    target's passes still do, and the output is plain greedy's."""
    import edgeseq
    package = str(tiny_package("t5", "int8")[0])
    target, draft = edgeseq.load(package, threads=1), edgeseq.load(package, threads=1)
    target.runner.sessions.even_rows = draft.runner.sessions.even_rows = True  # a pairing CPU
    rows = {"target": [], "draft": []}
    for name, engine in (("target", target), ("draft", draft)):
        run = engine.runner.decoder.run

        def recording(outputs, feeds, *rest, seen=rows[name], run=run):
            seen.append(feeds["input_ids"].size)
            return run(outputs, feeds, *rest)
        engine.runner.decoder = type("Recorded", (), {"run": staticmethod(recording)})()
    plain = edgeseq.load(package, threads=1).generate(SOURCES[0], max_new_tokens=12, draft=None)
    drafted = target.generate(SOURCES[0], max_new_tokens=12, draft=draft, max_draft=3)
    assert drafted.token_ids == plain.token_ids
    assert drafted.stats.speculation["drafted"] > 0
    assert any(n % 2 for n in rows["draft"])        # one-token draft steps, as they come
    assert rows["target"] and not any(n % 2 for n in rows["target"])  # every pass even


# --- sampling: the empirical distribution of the first two tokens matches the exact one
def _exact_two_token_distribution(engine, source, temperature):
    runner = engine.runner
    ids = np.array([source])
    state = runner.encode(ids, np.ones_like(ids))
    start = engine.manifest.special.decoder_start
    def probs(prefix):
        cache = runner.new_cache(1, len(prefix))
        logits = runner.step(np.array([prefix]), state, cache)[0, -1].astype(np.float64)
        logits[engine.manifest.special.eos] = -np.inf  # min_new_tokens=2 below
        e = np.exp((logits - logits.max()) / temperature)
        return e / e.sum()
    p1 = probs([start])
    return np.array([p1[a] * probs([start, a]) for a in range(len(p1))])  # [V, V]


def _chi_square_p(counts: np.ndarray, expected_probs: np.ndarray) -> float:
    from scipy.stats import chisquare
    n = counts.sum()
    expected = expected_probs * n
    big = expected >= 5  # pool rare outcomes into one bin
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    keep = exp > 0
    return float(chisquare(obs[keep], exp[keep] * obs[keep].sum() / exp[keep].sum()).pvalue)


@pytest.mark.parametrize("draft", ["model", "input", None])
def test_speculative_sampling_follows_the_target_distribution(draft, tiny_package, tiny_checkpoint,
                                                             tmp_path):
    pytest.importorskip("scipy")
    from edgeseq.export import export_checkpoint
    from tiny_models import build_tiny
    target = edgeseq.load(str(tiny_package("bart", "fp32")[0]), threads=1)
    drafter = draft  # None: plain sampling, checked by the same test
    if draft == "model":  # same shapes and vocabulary, different weights
        export_checkpoint(build_tiny("bart", tmp_path / "ck", seed=5), tmp_path / "pkg",
                          quant="int8", validate=False)
        drafter = edgeseq.load(str(tmp_path / "pkg"), threads=1)
    source, temperature, n = [5, 9, 13, 22, 40, 7, 2], 3.0, 3000
    exact = _exact_two_token_distribution(target, source, temperature).reshape(-1)
    vocab = target.arch.vocab_size
    counts = np.zeros(vocab * vocab)
    for seed in range(n):
        out = target.generate(source, max_new_tokens=2, min_new_tokens=2, do_sample=True,
                              temperature=temperature, seed=seed, draft=drafter, max_draft=2)
        counts[out.token_ids[0] * vocab + out.token_ids[1]] += 1
    assert _chi_square_p(counts, exact) > 0.001
    # the test has the power to catch a biased sampler: the draft's own distribution fails
    if draft == "model":
        biased = _exact_two_token_distribution(drafter, source, temperature).reshape(-1)
        assert _chi_square_p(counts, biased) < 1e-6


def test_a_fresh_engine_drafts_from_the_input_on_its_first_call():
    engine = edgeseq.load("default")
    result = engine.generate("she go to school yesterday and buyed a apple .", draft="input")
    assert result.stats.decoder_passes <= result.stats.new_tokens // 2


@pytest.mark.parametrize("draft", ["input", "layers"])
def test_greedy_speculation_keeps_the_no_repeat_rule_exact(draft, engines):
    engine = engines["t5", "fp32"]
    for ids in SOURCES:
        kw = dict(max_new_tokens=16, min_new_tokens=16, no_repeat_ngram_size=2)
        plain = engine.generate(ids, **kw).token_ids
        fast = engine.generate(ids, draft=draft, max_draft=5, adaptive_draft=False, **kw).token_ids
        assert fast == plain
        assert len(set(zip(plain, plain[1:]))) == len(plain) - 1
    kw = dict(max_new_tokens=12, no_repeat_ngram_size=2)  # a batch: rows finish apart
    batch = engine.generate(SOURCES, draft=draft, max_draft=5, adaptive_draft=False, **kw)
    assert [r.token_ids for r in batch] == [r.token_ids for r in engine.generate(SOURCES, **kw)]


def test_a_draft_engine_with_its_own_spinning_pool_is_warned_about(tiny_package):
    package = str(tiny_package("t5", "int8")[0])
    target, drafter = (edgeseq.load(package, threads=2) for _ in range(2))
    with pytest.warns(RuntimeWarning, match="shared_pool=True"):
        target.generate(SOURCES[0], max_new_tokens=4, draft=drafter)
    quiet = [edgeseq.load(package, threads=2, spin=False) for _ in range(2)]
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet[0].generate(SOURCES[0], max_new_tokens=4, draft=quiet[1])


def test_a_drafter_whose_planning_costs_more_than_drafting_saves_is_switched_off(engines):
    """The planning before a draft (here a drafter slow to name its situation) counts in
    the round's cost: right drafts that cost more than the passes they save stop."""
    import time
    engine = engines["t5", "fp32"]
    plain = engine.generate(SOURCES[0], max_new_tokens=14, min_new_tokens=14)

    class SlowToPlan(ScriptedDrafter):
        proposals = 0

        def situation(self, source, output):
            time.sleep(0.02)  # ~100 plain passes of this tiny model
            return 0

        def propose(self, ctx):  # every other round nothing: a plain pass, timed
            self.proposals += 1
            return super().propose(ctx) if self.proposals % 2 else Draft(np.zeros((1, 0), np.int64))

    drafter = SlowToPlan([plain.token_ids])
    kw = dict(max_new_tokens=14, min_new_tokens=14, draft=drafter, max_draft=4)
    for _ in range(6):
        assert engine.generate(SOURCES[0], **kw).token_ids == plain.token_ids
    control = engine.draft_planner(**kw)
    assert control.verify_cost(4) > 0.02  # the sleep is in a round's cost
    lengths = [control.plan(0).length for _ in range(8)]
    assert lengths.count(0) >= 8 - PROBE_ROUNDS  # off: a probe's rounds at most


class _PlanSays:
    """A planner that plans `length` tokens whatever the situation."""

    def __init__(self, length: int):
        self.length = length

    def plan(self, situation=None, call=None):
        return DraftPlan(0, self.length, situation)


def test_a_drafter_that_scans_the_source_first_drafts_it_whole_while_drafting_is_on():
    session, source = SimpleNamespace(scores=None), [list(range(5, 25))]
    assert _wanted(_PlanSays(3), session, 0, source, 0, scans=True).length == 20
    assert _wanted(_PlanSays(3), session, 0, source, 0, scans=False).length == 3
    assert _wanted(_PlanSays(3), session, 4, source, 1, scans=True).length == 3  # later passes: as planned
    assert _wanted(_PlanSays(0), session, 0, source, 0, scans=True).length == 0  # drafting off stays off
    assert InputDrafter.scans_source_first
    # a caller's drafter says so itself; checking its drafts keeps what it said
    scanning = SimpleNamespace(propose=None, update=None, scans_source_first=True)
    assert CheckedDrafter(scanning, vocab_size=10).scans_source_first
    assert not CheckedDrafter(SimpleNamespace(propose=None, update=None), vocab_size=10).scans_source_first


def test_a_draft_model_whose_tokenizer_file_differs_is_warned_about(tmp_path):
    import json
    import shutil

    from edgeseq.manifest import sha256_file
    target = edgeseq.load("default", threads=1, shared_pool=False)
    copy = tmp_path / "draft"
    shutil.copytree(target.directory, copy)
    tokenizer = copy / "tokenizer.json"
    tokenizer.write_text(json.dumps(json.loads(tokenizer.read_text()), indent=2))  # same ids
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["tokenizer.json"] = {"sha256": sha256_file(tokenizer),
                                           "bytes": tokenizer.stat().st_size}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    drafter = edgeseq.load(str(copy), threads=1, spin=False)
    text = "She go to school every days."
    with pytest.warns(RuntimeWarning, match="tokenizer.json differs"):
        fast = target.generate(text, draft=drafter, max_draft=3)
    assert fast.token_ids == target.generate(text, draft=None).token_ids
