"""What a call's drafting starts from: the drafter a package recommends (draft="auto"),
and the figures an engine keeps per drafter object, options and batch size across calls."""
from __future__ import annotations

import numpy as np
import pytest

import edgeseq
from edgeseq.runtime.drafters import Draft
from scripted_drafter import SOURCES, ScriptedDrafter


@pytest.fixture(scope="module")
def engines(tiny_package):
    return {case: edgeseq.load(str(tiny_package(*case)[0]), threads=1)
            for case in (("t5", "int8"), ("bart", "int8"), ("marian", "fp32"))}


def test_a_batch_learns_its_drafting_figures_apart_from_single_inputs(engines):
    """A batch's pass costs more and accepts only its rows' shortest run: mixed into one
    controller, those figures would misplan single-input calls."""
    engine = engines["marian", "fp32"]
    engine.generate(SOURCES, draft="input", max_new_tokens=8, speculate_rows=False)
    engine.generate(SOURCES[0], draft="input", max_new_tokens=8)
    opts = engine._options({"draft": "input", "max_new_tokens": 8})
    single, batch = engine._controller(opts, 1), engine._controller(opts, len(SOURCES))
    assert single is not batch and single.timed and batch.timed


def test_a_drafter_objects_figures_stay_its_own_after_another_at_its_address_is_freed(engines):
    """Figures are kept per drafter object; a new object that Python places where a freed
    one was (the same id()) starts fresh instead of inheriting them."""
    engine = engines["t5", "int8"]
    eos = engine.manifest.special.eos
    plain = engine.generate(SOURCES[0], max_new_tokens=14)
    script = [plain.token_ids + [eos] * 20]
    made: list[int] = []

    class Logged(ScriptedDrafter):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(id(self))

    wrong: set[int] = set()
    for _ in range(50):  # temporaries, as a caller might pass them, until an id comes back
        for _ in range(4):  # always wrong: its figures say drafting does not pay
            engine.generate(SOURCES[0], max_new_tokens=14, draft=Logged(script, wrong=True),
                            max_draft=8)
            wrong.add(made[-1])
        fast = engine.generate(SOURCES[0], max_new_tokens=14, draft=Logged(script), max_draft=8)
        if made[-1] in wrong:  # placed where an always-wrong drafter was
            assert fast.stats.speculation["acceptance_rate"] == 1.0
            return
    pytest.skip("no new drafter object took a freed one's id in this interpreter")


def test_layer_drafting_remembers_exits_across_calls_through_its_controller(engines):
    from edgeseq.runtime.options import GenerationOptions
    engine = engines[("t5", "int8")]
    engine.generate(SOURCES[0], max_new_tokens=12, draft="layers", max_draft=3)
    ways = engine._controller(GenerationOptions(draft="layers", max_draft=3)).ways
    # acceptance and step times per exit outlive the call
    assert ways and any(w.reached.sum() > 0 and w.step_passes is not None for w in ways.values())


def test_a_package_recommends_a_drafter_that_auto_uses_only_for_greedy_search(tiny_checkpoint,
                                                                               tmp_path):
    import shutil
    from transformers import GenerationConfig
    from edgeseq.errors import UnsupportedModelError
    from edgeseq.export import export_checkpoint
    src = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint("t5"), src)
    config = GenerationConfig.from_pretrained(src)
    config.draft = "input"
    config.save_pretrained(src)
    export_checkpoint(src, tmp_path / "pkg", quant="fp32", validate=False)
    engine = edgeseq.load(str(tmp_path / "pkg"), threads=1)
    assert engine.manifest.generation["draft"] == "input"
    kw = dict(max_new_tokens=12)
    for ids in SOURCES:
        plain = engine.generate(ids, draft=None, **kw)
        auto = engine.generate(ids, draft="auto", **kw)
        unasked = engine.generate(ids, **kw)  # a call without draft= means "auto", as on the CLI
        assert auto.token_ids == plain.token_ids == unasked.token_ids
        assert auto.stats.speculation["verify_passes"] >= 1
        assert unasked.stats.speculation["verify_passes"] >= 1
        assert plain.stats.speculation is None  # draft=None stays plain decoding
    # where drafting could change the output or does not apply, "auto" means none
    for other in (dict(num_beams=2), dict(do_sample=True, seed=0), dict(exit_after=1)):
        assert engine.generate(SOURCES[0], draft="auto", **kw, **other).stats.speculation is None
        assert engine.generate(SOURCES[0], **kw, **other).stats.speculation is None
    # a package that recommends none decodes plainly under "auto"
    bare = edgeseq.load(str(_bare_package(tiny_checkpoint, tmp_path)), threads=1)
    assert bare.generate(SOURCES[0], draft="auto", **kw).stats.speculation is None
    assert bare.generate(SOURCES[0], **kw).stats.speculation is None

    config.draft = "guess"
    config.save_pretrained(src)
    with pytest.raises(UnsupportedModelError, match="draft must be one of"):
        export_checkpoint(src, tmp_path / "bad", quant="fp32", validate=False)


def _bare_package(tiny_checkpoint, tmp_path):
    from edgeseq.export import export_checkpoint
    export_checkpoint(tiny_checkpoint("t5"), tmp_path / "bare", quant="fp32", validate=False)
    return tmp_path / "bare"


def test_a_drafter_that_cannot_be_weakly_referenced_still_drafts_exactly(engines):
    engine = engines["t5", "int8"]
    eos = engine.manifest.special.eos

    class Slotted:
        __slots__ = ("tokens",)

        def __init__(self, tokens):
            self.tokens = tokens

        def propose(self, ctx):
            done = len(ctx.output[0]) - 1
            return Draft(np.array([self.tokens[done:done + ctx.limit]], np.int64))

        def update(self, drafted, accepted):
            pass

    plain = engine.generate(SOURCES[0], max_new_tokens=14)
    drafter = Slotted(plain.token_ids + [eos] * 20)
    for _ in range(2):  # its figures are not kept between calls; each call still drafts
        fast = engine.generate(SOURCES[0], max_new_tokens=14, draft=drafter, max_draft=8)
        assert fast.token_ids == plain.token_ids
        assert fast.stats.speculation["accepted"] >= 1


def test_the_figures_of_freed_drafter_objects_are_dropped(engines):
    import gc
    engine = engines["bart", "int8"]
    plain = engine.generate(SOURCES[1], max_new_tokens=8)
    for _ in range(20):  # a new drafter object per call, as a server handling requests might
        engine.generate(SOURCES[1], max_new_tokens=8, draft=ScriptedDrafter([plain.token_ids]))
        gc.collect()
    kept = [key for key in engine._figures._kept if isinstance(key[1][0], tuple)]
    assert len(kept) <= 2  # the last drafter's controller (and nothing of the freed ones)
