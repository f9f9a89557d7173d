"""Speculative decoding never changes greedy output, and follows the target's
distribution when sampling."""
from __future__ import annotations

import numpy as np
import pytest

import edgeseq
from edgeseq.errors import OptionsError
from edgeseq.runtime.draft_control import DraftController
from edgeseq.runtime.drafters import Draft
from edgeseq.runtime.speculative import SpecStats, speculative

SOURCES = [[5, 9, 13, 22, 40, 7, 2], [30, 31, 8, 2], [11, 60, 61, 62, 63, 64, 65, 66, 67, 2]]
CASES = [(f, q) for f in ("t5", "bart", "marian") for q in ("fp32", "int8")]


@pytest.fixture(scope="module")
def engines(tiny_package):
    return {case: edgeseq.load(str(tiny_package(*case)[0]), threads=1) for case in CASES}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("draft", ["input", "ngram", "layers", "self-model"])
def test_greedy_output_is_identical_for_every_drafter(case, draft, engines):
    engine = engines[case]
    drafter = engine if draft == "self-model" else draft
    engine.generate(SOURCES[0], max_new_tokens=16)  # gives the n-gram cache history
    for ids in SOURCES:
        for min_new in (0, 14):
            kw = dict(max_new_tokens=16, min_new_tokens=min_new)
            plain = engine.generate(ids, **kw)
            fast = engine.generate(ids, draft=drafter, max_draft=5, **kw)
            assert fast.token_ids == plain.token_ids
            assert fast.stats.speculation["verify_passes"] <= len(plain.token_ids)


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


class _Scripted:
    """A drafter that proposes a scripted continuation of the output."""

    def __init__(self, script, wrong=False):
        self.script, self.wrong = script, wrong

    def propose(self, ctx):
        done = len(ctx.output[0]) - 1
        rows = []
        for script in self.script:
            tokens = list(script[done:done + ctx.limit + 3])  # overshoots: the loop trims
            rows.append([(t + 1) % 96 for t in tokens] if self.wrong else tokens)
        width = max(len(r) for r in rows)
        return Draft(np.array([r + [-1] * (width - len(r)) for r in rows], np.int64))

    def update(self, drafted, accepted):
        pass


def _run(engine, rows, drafter, max_new, min_new=0):
    opts = dict(max_new_tokens=max_new, min_new_tokens=min_new)
    from edgeseq.runtime.options import GenerationOptions
    o = GenerationOptions(**opts)
    session = engine._session(rows, 1, o)
    stats = SpecStats()
    start = np.full(len(rows), engine.manifest.special.decoder_start, np.int64)
    control = DraftController(max_draft=8, adaptive=False)  # always verify what is drafted
    chunks = list(speculative(session, start, engine._rules(o), engine.manifest.special.pad,
                              drafter, rows, stats, control))
    return np.concatenate(chunks, axis=1), stats


@pytest.mark.parametrize("case", [("bart", "fp32"), ("t5", "int8")])
def test_always_right_always_wrong_eos_inside_and_max_length_inside_a_draft(case, engines):
    engine = engines[case]
    eos, pad = engine.manifest.special.eos, engine.manifest.special.pad
    plain = [engine.generate(s, max_new_tokens=12).token_ids for s in SOURCES]
    script = [p + [eos] * 20 for p in plain]  # runs past EOS and past max length
    right, stats = _run(engine, SOURCES, _Scripted(script), 12)
    for row, expected in zip(right, plain):
        tokens = row.tolist()
        assert tokens[:len(expected)] == expected and set(tokens[len(expected):]) <= {pad}
    assert stats.acceptance_rate > 0.5 and stats.verify_passes < 12
    wrong, stats = _run(engine, SOURCES, _Scripted(script, wrong=True), 12)
    assert wrong.tolist() == right.tolist() and stats.accepted == 0


def test_batched_speculation_equals_one_by_one(engines):
    engine = engines["marian", "int8"]
    batch = engine.generate(SOURCES, max_new_tokens=14, draft="input")
    assert [r.token_ids for r in batch] == [engine.generate(s, max_new_tokens=14).token_ids
                                           for s in SOURCES]


def test_speculating_row_by_row_equals_lockstep_and_each_row_keeps_its_own_figures(engines):
    engine = engines["t5", "int8"]
    kw = dict(max_new_tokens=14, draft="input", adaptive_draft=False)  # lengths: no timing
    lockstep = engine.generate(SOURCES, speculate_rows=False, **kw)
    rows = engine.generate(SOURCES, speculate_rows=True, **kw)
    assert [r.token_ids for r in rows] == [r.token_ids for r in lockstep]
    # each row's passes are its own: they add up to the call's, none is the batch's
    passes = [r.stats.speculation["verify_passes"] for r in rows]
    assert passes == [engine.generate(s, **kw).stats.speculation["verify_passes"] for s in SOURCES]
    with pytest.raises(OptionsError, match="speculate_rows applies with draft="):
        engine.generate(SOURCES, speculate_rows=False)


def test_a_batch_learns_its_drafting_figures_apart_from_single_inputs(engines):
    """A batch's pass costs more and accepts only its rows' shortest run: mixed into one
    controller, those figures would misplan single-input calls."""
    engine = engines["marian", "fp32"]
    engine.generate(SOURCES, draft="input", max_new_tokens=8, speculate_rows=False)
    engine.generate(SOURCES[0], draft="input", max_new_tokens=8)
    controllers = {key[-1]: c for key, c in engine._controllers.items() if key[0] == "input"}
    assert {1, len(SOURCES)} <= set(controllers)
    assert controllers[1] is not controllers[len(SOURCES)]


def test_a_speculating_batch_goes_the_way_measured_faster_and_rechecks_the_other():
    from edgeseq.runtime.batching import EXPLORE_EVERY, BatchSchedule
    schedule = BatchSchedule(batch=8)
    speed = {True: 1000.0, False: 800.0}   # tokens/s one after another, together

    def run(chunks: int) -> list[bool]:
        ways = []
        for _ in range(chunks):
            ways.append(schedule.rows_alone())
            schedule.record(ways[-1], tokens=800, seconds=800 / speed[ways[-1]], rows=8)
        return ways
    # each way twice (the first chunk after a switch only warms up), one after another first
    assert run(4) == [True, True, False, False]
    ways = run(2 * EXPLORE_EVERY)
    assert ways.count(False) == 2 * 2        # two re-checks of lockstep, each warmed up first
    speed[True] = 200.0                      # the inputs change: rows alone slow down
    run(EXPLORE_EVERY + 8)
    assert run(8) == [False] * 8


def test_a_batch_is_timed_one_row_after_another_then_together(tiny_package):
    engine = edgeseq.load(str(tiny_package("t5", "int8")[0]), threads=1)  # no figures yet
    kw = dict(max_new_tokens=10, draft="input")
    calls = [engine.generate(SOURCES, **kw) for _ in range(4)]
    # 3: each row decoded on its own, 1: the rows together; each way's first chunk warms up
    assert [len({id(r.stats) for r in results}) for results in calls] == [3, 3, 1, 1]
    plain = [engine.generate(s, max_new_tokens=10).token_ids for s in SOURCES]
    assert all([r.token_ids for r in results] == plain for results in calls)


def test_speculating_row_by_row_plans_the_memory_of_one_row(engines):
    engine = engines["t5", "int8"]
    rows = engine.generate(SOURCES, max_new_tokens=8, draft="input", speculate_rows=True,
                           memory_budget_mb=10_000)
    assert rows[0].stats.memory_plan["request"]["batch"] == 1


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
    drafter = "input"
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


def _never_pays(control: DraftController, passes: int) -> list[int]:
    """Draft lengths asked for while every draft is rejected and each drafted token costs
    a full pass."""
    limits = []
    for _ in range(passes):
        k = control.plan().length
        control.observe(k, 0, verify_s=0.01 * (1 + k), draft_s=0.01 * k)
        limits.append(k)
    return limits


def test_the_controller_switches_drafting_off_when_it_does_not_pay_and_probes_again():
    control = DraftController(max_draft=8)
    _never_pays(control, 20)
    limits = [control.plan().length for _ in range(16)]
    assert limits.count(0) >= 14 and max(limits) <= 2  # off, with rare short probes
    for _ in range(500):  # drafts start being accepted and verifying is cheap
        k = control.plan().length
        control.observe(k, k, verify_s=0.01 * (1 + 0.02 * k), draft_s=0.0)
    assert control.plan().length >= 4


def test_a_fresh_controller_keeps_drafting_through_its_first_misses():
    """Two early misses (an edited first word, a rewritten second one) and slow first
    passes (onnxruntime allocating for new shapes) must not switch a fresh engine's
    drafting off: it waits for min_rounds rounds before judging."""
    control = DraftController.for_copying(64)
    control.observe_plain(0.0004)
    control.observe(19, 0, verify_s=0.004, draft_s=0.0)
    control.observe(8, 0, verify_s=0.003, draft_s=0.0)
    assert control.plan().length >= 2


def test_a_fresh_engine_drafts_from_the_input_on_its_first_call():
    engine = edgeseq.load("default")
    result = engine.generate("she go to school yesterday and buyed a apple .", draft="input")
    assert result.stats.decoder_passes <= result.stats.new_tokens // 2


def test_probes_back_off_while_drafting_keeps_not_paying():
    control = DraftController(max_draft=8, probe_every=8, max_probe_gap=128)
    limits = _never_pays(control, 2000)
    probes_late = sum(k > 0 for k in limits[1000:])
    assert control.probe_gap == 128
    assert probes_late <= 1000 // 128 + 1  # under 1% of passes, not one in 8


def test_probes_never_draft_more_than_max_draft():
    control = DraftController(max_draft=1)
    assert max(_never_pays(control, 200)) == 1


def test_short_generations_do_not_each_start_with_a_probe():
    """Plain passes are counted as they run: a call that ends inside the gap between
    probes leaves the rest of it to the next call (Whisper decodes 30 s windows)."""
    control = DraftController(max_draft=8, probe_every=8, max_probe_gap=128)
    _never_pays(control, 2000)  # the gap is at its longest now
    probes = 0
    for _ in range(64):  # 64 calls of 20 tokens: 1,280 passes
        generated = 0
        while generated < 20:
            plan = control.plan()
            if plan.length:
                probes += 1
                control.observe(plan.length, 0, verify_s=0.01 * (1 + plan.length),
                                draft_s=0.01 * plan.length)
                generated += 1
                continue
            ran = min(control.plain_passes(), 20 - generated)
            control.ran_plain(ran)
            generated += ran
    assert probes <= 1280 // 128 + 1


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


def _simulate(control: DraftController, accept, passes: int) -> list[int]:
    """Draft lengths asked for when a draft of k tokens has accept(k) accepted and a
    verify pass costs 5% more per drafted token (t5-small int8 measured ~6%)."""
    limits = []
    for _ in range(passes):
        k = control.plan().length
        control.observe(k, accept(k), verify_s=0.01 * (1 + 0.05 * k), draft_s=0.0)
        limits.append(k)
    return limits


def test_the_controller_learns_where_drafts_break():
    """Drafts right for exactly 3 tokens: longer ones only cost more (a 4th is tried
    now and then, as what is known about position 4 fades)."""
    control = DraftController(max_draft=32)
    limits = _simulate(control, lambda k: min(k, 3), 200)
    assert set(limits[-20:]) <= {3, 4} and limits[-20:].count(3) >= 10


def test_the_controller_drafts_long_when_acceptance_comes_in_stretches():
    """Copying stretches (input drafting on an edit task): a draft is wholly right or
    wrong at once. A single per-token rate (0.5 here) would cap drafts at a few tokens."""
    stretch = iter([True, False] * 1000)
    control = DraftController(max_draft=32)
    limits = _simulate(control, lambda k: k if next(stretch) else 0, 400)
    assert min(limits[-40:]) >= 24


def test_each_situation_the_drafter_names_gets_its_own_draft_length():
    """Drafts that go on after a fully accepted one are right to the end; drafts
    re-anchored by position alone are wrong at once. One pooled curve would give both the
    same middling length; per situation, the first drafts long and the second one token
    (never none: a situation that drafted nothing could never be measured again)."""
    going_on, aligned = 1, 2
    control = DraftController(max_draft=32)
    control.observe_plain(0.010)
    for i in range(200):
        situation = (going_on, aligned)[i % 2]
        k = control.plan(situation).length
        accepted = k if situation == going_on else 0
        control.observe(k, accepted, verify_s=0.010 * (1 + 0.05 * k), draft_s=0.0,
                        situation=situation)
    assert control.plan(going_on).length >= 24
    assert control.plan(aligned).length == 1
    assert control.plan(going_on).situation == going_on


def test_the_input_drafter_names_where_its_draft_comes_from():
    from edgeseq.runtime.drafters import (ALIGNED, GOING_ON, NGRAM, START, DraftContext,
                                          InputDrafter)
    source = [10, 11, 12, 13, 14, 15, 16, 1]
    drafter = InputDrafter(max_draft=64)

    def situation(out: list[int]) -> int | None:
        named = drafter.situation([source], [[0] + out])
        drafter.propose(DraftContext([source], [[0] + out], 64))
        return named

    assert situation([]) == START
    drafter.update(8, 2)  # 10, 11 accepted, 12 rejected: the model wrote 98 instead
    assert situation([10, 11, 98]) == ALIGNED
    drafter.update(5, 1)  # 13 accepted, 14 rejected: the model wrote 14 after all
    assert situation([10, 11, 98, 13, 14]) == NGRAM + 2  # "13 14" anchors, "98 13 14" not
    drafter.update(2, 2)  # both accepted: the next draft goes on from there
    assert situation([10, 11, 98, 13, 14, 15, 16]) == GOING_ON
    drafter.update(1, 1)
    assert situation([10, 11, 98, 13, 14, 15, 16, 1]) is None  # the source is used up
    assert drafter.situation([source, source], [[0], [0]]) is None  # a batch names none


def test_ngram_drafts_continue_what_earlier_outputs_said_after_the_same_tokens():
    from edgeseq.runtime.drafters import DraftContext, NgramDrafter
    drafter = NgramDrafter(max_draft=4, ngram=2)

    def proposed(out: list[int]) -> list[int]:
        return drafter.propose(DraftContext([[]], [[0] + out], 8)).tokens[0].tolist()

    drafter.learn([5, 6, 7, 8, 9, 1])
    assert proposed([3, 6, 7]) == [8, 9, 1]  # "6 7" was followed by "8 9 1"
    assert proposed([4]) == []               # never seen
    drafter.learn([6, 7, 2, 1])              # learnt after a draft: the latest one wins
    assert proposed([6, 7]) == [2, 1]
    for i in range(NgramDrafter.PENDING_LIMIT + 3):  # many calls that never draft
        drafter.learn([100 + i, 200 + i])
    assert proposed([100]) == [200]


def _input_drafts(source: list[int], outputs: list[list[int]], shapes=None) -> list[list[int]]:
    """What the input drafter proposes after each successive output (start token first)."""
    from edgeseq.runtime.drafters import DraftContext, InputDrafter
    drafter = InputDrafter(max_draft=64, shapes=shapes)
    proposals = []
    for out in outputs:
        tokens = drafter.propose(DraftContext([source], [[0] + out], 64)).tokens[0]
        proposals.append([int(t) for t in tokens if t >= 0])
    return proposals


def test_input_drafts_continue_the_source_after_a_copied_word():
    source = [10, 11, 12, 13, 14, 1]
    assert _input_drafts(source, [[], [10, 11]]) == [source, [12, 13, 14, 1]]


def test_input_drafts_skip_a_substituted_word_and_re_anchor_after_an_insertion():
    source = [10, 11, 12, 13, 14, 1]
    # 11 -> 99 (substitution): the source goes on after the replaced word
    assert _input_drafts(source, [[], [10], [10, 99]])[-1] == [12, 13, 14, 1]
    # an inserted word, then a copied one: found again by matching
    assert _input_drafts(source, [[], [10], [10, 98, 11]])[-1] == [12, 13, 14, 1]


# a SentencePiece-style vocabulary: "\u2581" marks a word's first piece
_PIECES = {"</s>": 1, "\u2581bec": 10, "a": 11, "ese": 12, "\u2581when": 13, "\u2581we": 14,
           "\u2581Because": 20, "\u2581When": 21}


def _shapes():
    from edgeseq.runtime.token_shapes import TokenShapes
    return TokenShapes.from_vocab(_PIECES, special={1})


def test_token_shapes_know_word_starts_and_capitalised_twins():
    shapes = _shapes()
    assert [shapes.starts_word(t) for t in (1, 10, 11, 12, 13)] == [True, True, False, False, True]
    assert shapes.capitalised == {13: 21}  # "\u2581bec" has no "\u2581Bec"


def test_token_shapes_read_byte_level_marks_and_give_up_without_marks():
    from edgeseq.runtime.token_shapes import TokenShapes
    byte_level = TokenShapes.from_vocab({"\u0120the": 0, "\u0120The": 1, "s": 2}, special=set())
    assert byte_level.capitalised == {0: 1} and not byte_level.starts_word(2)
    assert TokenShapes.from_vocab({"the": 0, "##s": 1}, special=set()) is None


def test_token_shapes_of_the_default_packages_tokenizer():
    codec = edgeseq.load("default").codec
    ids = {word: codec._tok.token_to_id(word) for word in ("\u2581because", "\u2581Because", "\u2581the")}
    shapes = codec.shapes
    assert shapes.capitalised[ids["\u2581because"]] == ids["\u2581Because"]
    assert shapes.starts_word(ids["\u2581the"]) and shapes.starts_word(codec._tok.token_to_id("</s>"))


def test_input_drafts_with_token_shapes_capitalise_the_first_word():
    source = [13, 14, 1]
    assert _input_drafts(source, [[]], _shapes()) == [[21, 14, 1]]
    assert _input_drafts(source, [[]]) == [source]  # without shapes: the literal source


def test_input_drafts_with_token_shapes_resume_at_the_next_word_after_a_rewritten_one():
    source = [10, 11, 12, 13, 14, 1]  # "bec a ese when we"
    # "Because" replaced the three pieces of "becaese": go on at "when", not inside the word
    assert _input_drafts(source, [[], [20]], _shapes())[-1] == [13, 14, 1]
    assert _input_drafts(source, [[], [20]])[-1] == [11, 12, 13, 14, 1]


def _layer_controller(exits, base_s=0.010) -> DraftController:
    """A controller that has timed a plain pass (base_s), set up by a layer drafter."""
    from edgeseq.runtime.drafters import SelfDrafter
    control = DraftController(8)
    control.observe_plain(base_s)
    SelfDrafter(None, 6, None, False, None, control, exits=exits)
    return control


def _accept(control: DraftController, way: int, rate: float, step_s: float, passes: int = 40):
    """Show the controller `passes` drafts of 4 at `way`, each token accepted at `rate`."""
    rng = np.random.default_rng(0)
    for _ in range(passes):
        kept = rng.random(4) < rate
        accepted = 4 if kept.all() else int(np.argmin(kept))  # up to the first rejection
        control.observe(4, accepted, verify_s=0.010 * 1.24, draft_s=4 * step_s, way=way)


def test_layer_drafting_picks_the_exit_and_length_with_the_most_tokens_per_second():
    control = _layer_controller([2, 4])
    _accept(control, 2, 0.85, step_s=0.002)  # the shallow exit: 3.5x cheaper per step
    _accept(control, 4, 0.90, step_s=0.007)
    plan = control.plan()
    assert plan.way == 2 and plan.length > 1
    dear = _layer_controller([2, 4])
    _accept(dear, 2, 0.85, step_s=0.011)     # draft steps dearer than a plain pass
    _accept(dear, 4, 0.90, step_s=0.011)
    assert dear.plan().length == 0           # never pays: drafting switches off


def test_layer_drafting_remembers_exits_across_calls_through_its_controller(engines):
    from edgeseq.runtime.options import GenerationOptions
    engine = engines[("t5", "int8")]
    engine.generate(SOURCES[0], max_new_tokens=12, draft="layers", max_draft=3)
    ways = engine._controller(GenerationOptions(draft="layers", max_draft=3)).ways
    # acceptance and step times per exit outlive the call
    assert ways and any(w.reached.sum() > 0 and w.step_s is not None for w in ways.values())


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


def test_a_drafter_that_mostly_finds_nothing_is_switched_off_like_one_that_is_wrong():
    control = DraftController(max_draft=8)
    control.observe_plain(0.01)
    assert control.plan().length > 0  # optimistic at first
    for _ in range(64):
        control.observe_empty()
    limits = [control.plan().length for _ in range(32)]
    assert limits.count(0) >= 28  # off, with rare probes
