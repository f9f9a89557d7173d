"""The SpecMemo planner: plans fit their budget on paper, give up speculation first,
refuse impossible budgets with the bound, and generate() follows the plan."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import edgeseq
from edgeseq.errors import MemoryBudgetError
from edgeseq.runtime.memory import MB, Request, estimate, plan
from tiny_models import FAMILIES  # noqa: F401  (fixtures build the packages)


@pytest.fixture(scope="module")
def engine(tiny_package):
    return edgeseq.load(str(tiny_package("bart", "int8")[0]), threads=1)


@settings(max_examples=200, deadline=None)
@given(budget=st.integers(1, 4000), batch=st.integers(1, 32), source=st.integers(1, 80),
       new=st.integers(1, 79), draft=st.integers(0, 32), rerank=st.booleans())
def test_a_plan_never_exceeds_its_budget_on_paper(engine_arch, budget, batch, source, new, draft,
                                                  rerank):
    arch, weights = engine_arch
    wanted = Request(batch, source, new, draft, rerank_source=rerank)
    try:
        chosen = plan(arch, weights, budget * MB, wanted)
    except MemoryBudgetError as err:
        floor = estimate(arch, weights, Request(1, source, 1, 0, rerank_source=rerank)).total
        assert floor > budget * MB and f"{floor / MB:.0f} MB" in str(err)
        return
    assert chosen.estimate.total <= budget * MB
    r = chosen.request
    assert r.draft <= draft and r.batch <= batch and r.max_new_tokens <= new
    if r.batch < batch or r.max_new_tokens < new:  # speculation is given up first
        assert r.draft == 0


@pytest.fixture(scope="module")
def engine_arch(engine):
    from edgeseq.manifest import loaded_weight_bytes
    from edgeseq.runtime.memory import resident_weights
    return engine.arch, resident_weights(loaded_weight_bytes(engine.manifest), engine.manifest.quant)


def test_impossible_budget_names_the_lower_bound(engine):
    with pytest.raises(MemoryBudgetError, match="below the .* MB that plain decoding"):
        engine.generate([5, 6, 7], max_new_tokens=4, memory_budget_mb=1)


def test_generate_follows_the_plan(engine):
    floor = engine.memory_plan(10_000, Request(1, 3, 1, 0)).estimate.total / MB
    roomy = engine.generate([[5, 6, 7]] * 4, max_new_tokens=8, draft="input",
                            memory_budget_mb=10_000)
    assert roomy[0].stats.memory_plan["reduced"] == []
    tight = engine.generate([[5, 6, 7]] * 4, max_new_tokens=8, draft="input",
                            memory_budget_mb=floor + 0.05)
    plan_json = tight[0].stats.memory_plan
    assert plan_json["request"]["draft"] == 0 and plan_json["predicted"]["total"] <= plan_json["budget"]
    assert tight[0].stats.speculation is None  # speculation was switched off by the plan
    assert [r.token_ids[:len(t.token_ids)] for r, t in zip(roomy, tight)] == \
        [t.token_ids for t in tight]


def test_cli_plan_prints_the_plan(tiny_package, capsys):
    from edgeseq.cli import main
    pkg = str(tiny_package("bart", "int8")[0])
    assert main(["plan", pkg, "--memory-budget", "500", "--batch", "4", "--source-length", "32",
                 "--max-new-tokens", "32", "--json"]) == 0
    import json
    out = json.loads(capsys.readouterr().out)
    assert out["predicted"]["total"] <= out["budget"] == 500 * MB
    assert main(["plan", pkg, "--memory-budget", "1"]) == 2
    assert "below" in capsys.readouterr().err
    # drafting with a draft model: its weights and caches are in the plan
    assert main(["plan", pkg, "--memory-budget", "500", "--draft-model", pkg, "--json"]) == 0
    drafting = json.loads(capsys.readouterr().out)
    assert drafting["request"]["draft_model_bytes"] > 0
    # as that package would load on this CPU (its load-time rewrites included)
    assert drafting["request"]["draft_model_bytes"] == \
        edgeseq.load(pkg, threads=1).resident_weight_bytes()
    assert drafting["predicted"]["draft"] > drafting["request"]["draft_model_bytes"]
    assert main(["plan", pkg, "--memory-budget", "500", "--draft-model", "/nonexistent"]) == 2
    assert "not a model package" in capsys.readouterr().err
    other_vocabulary = str(tiny_package("marian", "int8")[0])
    assert main(["plan", pkg, "--memory-budget", "500", "--draft-model", other_vocabulary]) == 2
    assert "share the target's vocabulary" in capsys.readouterr().err


def test_the_rerank_pass_is_budgeted_when_it_runs(engine_arch):
    arch, weights = engine_arch
    plain = estimate(arch, weights, Request(1, 60, 60, 0))
    reranked = estimate(arch, weights, Request(1, 60, 60, 0, rerank_source=True))
    assert plain.rerank == 0 and reranked.rerank > 0
    assert reranked.total - plain.total == reranked.rerank


def test_a_drafting_rerank_budgets_the_logits_its_scores_hold(engine_arch):
    from edgeseq.runtime.rerank import held_logit_bytes
    arch, weights = engine_arch
    plain = estimate(arch, weights, Request(1, 60, 60, 0, rerank_source=True))
    drafting = estimate(arch, weights, Request(1, 60, 60, 16, rerank_source=True))
    held = held_logit_bytes([[5] * 60], arch.vocab_size, max_draft=16)
    assert drafting.rerank >= plain.rerank + held


def test_a_draft_models_own_buffers_are_budgeted(engine, engine_arch):
    """A draft model runs its own encoder and keeps its own caches, in sessions with
    memory arenas of their own: a draft model of the target's shape adds what the target
    itself needs for the same request (passes of k+1 positions), beside its weights."""
    arch, weights = engine_arch
    request = Request(4, 30, 50, 8, draft_model_bytes=1 * MB)
    bare = estimate(arch, weights, request)
    with_model = estimate(arch, weights, request, draft_arch=arch)
    own = estimate(arch, 0, Request(4, 30, 50, 8))  # the target's own, same request
    assert with_model.draft - bare.draft == own.total - own.runtime - own.draft
    # generate() plans with the draft engine's shape, and gives it up with speculation
    floor = engine.memory_plan(10_000, Request(2, 3, 8, 0)).estimate.total / MB
    roomy = engine.generate([[5, 6, 7]] * 2, max_new_tokens=8, draft=engine,
                            memory_budget_mb=10_000)[0].stats.memory_plan
    tight = engine.generate([[5, 6, 7]] * 2, max_new_tokens=8, draft=engine,
                            memory_budget_mb=floor + 0.01)[0].stats.memory_plan
    asked = Request(**roomy["request"])
    assert roomy["predicted"]["draft"] == estimate(arch, weights, asked, draft_arch=arch).draft
    assert roomy["predicted"]["draft"] > estimate(arch, weights, asked).draft
    assert tight["request"]["draft"] == 0 and tight["predicted"]["draft"] == 0


@pytest.mark.parametrize("option, family, held, residency", [
    # x86 CPUs without VNNI: the encoder's int8 weights handed to onnxruntime as uint8
    # buffers, whose copy it keeps (runtime/integer_gemm.py)
    ("unsigned_int8_weights", "bart", "unsigned_weight_bytes", "UNSIGNED_WEIGHT_RESIDENCY"),
    # a decoder multiplying in fp32 holds its int8 weights dequantized, onnxruntime's copy
    # besides their packed form (runtime/decoder_products.py)
    ("fp32_decoder_products", "t5", "fp32_product_bytes", "FP32_PRODUCT_RESIDENCY"),
])
def test_weights_rewritten_at_load_are_counted(tiny_package, option, family, held, residency):
    from edgeseq.runtime import memory
    package = str(tiny_package(family, "int8")[0])
    stored = edgeseq.load(package, threads=1, **{option: False})
    rewritten = edgeseq.load(package, threads=1, **{option: True})
    added = getattr(rewritten.runner.sessions, held)
    assert added > 0 and getattr(stored.runner.sessions, held) == 0
    extra = rewritten.resident_weight_bytes() - stored.resident_weight_bytes()
    assert abs(extra - added * getattr(memory, residency)) <= 1
    wanted = Request(1, 16, 8, 0)
    assert rewritten.memory_plan(500, wanted).estimate.weights == rewritten.resident_weight_bytes()


@pytest.mark.parametrize("rewrites", [False, True])
def test_a_packages_weights_are_planned_as_they_will_load_without_loading_it(tiny_package,
                                                                           rewrites):
    """`edgeseq plan --draft-model` counts a draft model's weights from its files: what
    loading it under the same options on this CPU would hold."""
    from edgeseq.manifest import read_manifest
    from edgeseq.runtime.decoder import planned_weight_bytes
    package = tiny_package("t5", "int8")[0]
    engine = edgeseq.load(str(package), threads=1, unsigned_int8_weights=rewrites,
                          fp32_decoder_products=rewrites)
    sessions = engine.runner.sessions
    assert bool(sessions.unsigned_weight_bytes) == bool(sessions.fp32_product_bytes) == rewrites
    assert planned_weight_bytes(package, read_manifest(package), engine.config) == \
        engine.resident_weight_bytes()


def test_passes_of_an_even_number_of_rows_budget_one_position_more(engine_arch):
    """Where this CPU pairs rows (runtime/nbits_rows.py) a pass of k+1 tokens may run k+2
    rows: their logits and activations are counted."""
    arch, weights = engine_arch
    for draft in (0, 4):
        as_they_come = estimate(arch, weights, Request(2, 20, 30, draft))
        even = estimate(arch, weights, Request(2, 20, 30, draft, even_rows=True))
        assert even.logits * (draft + 1) == pytest.approx(as_they_come.logits * (draft + 2), rel=1e-3)
        assert even.decoder_activations > as_they_come.decoder_activations
        assert even.total > as_they_come.total
