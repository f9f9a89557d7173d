"""The runtime asks onnxruntime how this CPU's MatMulNBits kernels compute rows: alike
alone and among others, alike only in pairs, or neither (runtime/nbits_rows.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edgeseq import names
from edgeseq.runtime import nbits_rows
from edgeseq.runtime.nbits_rows import (ALONE, N, PAIRS, DecoderRows, NBitsKind, nbits_kinds,
                                        product_model, row_grouping, wants_even_rows)

DEFAULT_DECODER = Path(__file__).resolve().parents[1] / "edgeseq" / "default_model" / names.DECODER_FILE
KINDS = [NBitsKind(8, 128, 4), NBitsKind(8, 32, 4), NBitsKind(4, 128, 4), NBitsKind(8, 128, 0)]


def _session(kind: NBitsKind) -> ort.InferenceSession:
    return ort.InferenceSession(product_model(kind), providers=["CPUExecutionProvider"])


def test_the_probe_model_is_an_8_bit_product_of_its_rows():
    """What it runs is MatMulNBits: the rows times (stored - 128) x scale, up to the int8
    rounding of the activations."""
    kind = NBitsKind(8, 128, 4)
    rows = np.random.default_rng(1).standard_normal((5, 256)).astype(np.float32)
    got = _session(kind).run(None, {"rows": rows})[0]
    rng = np.random.default_rng(0)  # the model's own weights, drawn as product_model draws them
    stored = rng.integers(0, 256, (N, 2, 128), dtype=np.uint8).reshape(N, 256)
    scales = np.repeat((rng.random(N * 2) * 0.01).astype(np.float32).reshape(N, 2), 128, axis=1)
    want = rows @ ((stored.astype(np.float32) - 128) * scales).T
    assert got.shape == (5, N)
    assert np.abs(got - want).max() < 0.02 * np.abs(want).max()


@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_the_answer_is_what_the_rows_show(kind):
    session = _session(kind)
    rows = np.random.default_rng(2).standard_normal((6, 2 * kind.block)).astype(np.float32)
    together = session.run(None, {"rows": rows})[0]
    alone = np.concatenate([session.run(None, {"rows": rows[i:i + 1]})[0] for i in range(6)])
    pairs = np.concatenate([session.run(None, {"rows": rows[[i, 5 - i]]})[0][:1] for i in range(6)])
    grouping = row_grouping(kind)
    assert grouping in (ALONE, PAIRS, None)
    assert (grouping == ALONE) == np.array_equal(alone, together)
    if grouping == PAIRS:  # any row among 2, paired with any other, as among 6
        assert np.array_equal(pairs, together)
    assert row_grouping(kind, threads=2) == grouping


def test_the_kinds_of_a_decoder_are_read_from_its_graph_if_branches_included(tiny_package):
    assert nbits_kinds(DEFAULT_DECODER.read_bytes()) == {NBitsKind(8, 128, 4)}
    fp32 = tiny_package("t5", "fp32")[0] / names.DECODER_FILE
    assert nbits_kinds(fp32.read_bytes()) == set()


@pytest.mark.parametrize("groupings,paired", [
    ({ALONE}, False), ({PAIRS}, True), ({ALONE, PAIRS}, True), ({PAIRS, None}, False),
    ({None}, False), (set(), False)])
def test_passes_take_even_rows_only_where_pairs_make_every_product_exact(monkeypatch, groupings,
                                                                         paired):
    kinds = {NBitsKind(8, 16 * (i + 1), 4): g for i, g in enumerate(groupings)}
    monkeypatch.setattr(nbits_rows, "nbits_kinds", lambda model: set(kinds))
    monkeypatch.setattr(nbits_rows, "row_grouping", lambda kind, threads=1: kinds[kind])
    assert DecoderRows(b"").in_pairs == paired


@pytest.mark.parametrize("groupings,padded,fp32,exact", [
    # padded attention (row-invariant decoders): only products that pair rows need them
    ({ALONE}, True, False, False), ({PAIRS}, True, False, True), ({PAIRS, None}, True, False, False),
    ({PAIRS}, True, True, False),  # multiplied in fp32: rows alike alone
    # unpadded attention (int4, --no-row-invariant): a lone query row has its own kernel, so
    # pairs help wherever the products compute rows alike alone or in pairs
    ({ALONE}, False, False, True), ({PAIRS}, False, False, True), (set(), False, False, True),
    ({ALONE, None}, False, False, False), ({None}, False, True, True)])
def test_even_rows_are_wanted_where_they_make_every_row_exact(monkeypatch, groupings, padded,
                                                               fp32, exact):
    kinds = {NBitsKind(8, 16 * (i + 1), 4): g for i, g in enumerate(groupings)}
    monkeypatch.setattr(nbits_rows, "nbits_kinds", lambda model: set(kinds))
    monkeypatch.setattr(nbits_rows, "row_grouping", lambda kind, threads=1: kinds[kind])
    assert DecoderRows(b"").even_rows_make_exact(padded, fp32) == exact


def test_by_default_only_packages_meant_to_speculate_pay_for_even_rows():
    pairs, alone = (lambda: True), (lambda: False)
    assert wants_even_rows(None, "cpu", True, pairs)
    assert not wants_even_rows(None, "cpu", False, pairs)   # plain greedy would pay 1.2x
    assert wants_even_rows(True, "cpu", False, pairs)
    assert not wants_even_rows(False, "cpu", True, pairs)
    assert not wants_even_rows(True, "cpu", True, alone)    # rows alike alone: nothing to do
    assert not wants_even_rows(True, "cuda", True, pairs)


def test_the_cpu_is_asked_about_pairs_only_when_the_answer_decides():
    asked = []
    probe = lambda: asked.append(True) or True
    wants_even_rows(None, "cpu", False, probe)
    wants_even_rows(False, "cpu", True, probe)
    wants_even_rows(True, "cuda", True, probe)
    assert not asked
    assert wants_even_rows(None, "cpu", True, probe) and asked


def test_a_bad_choice_is_named(tiny_package):
    import edgeseq
    from edgeseq.errors import OptionsError
    with pytest.raises(OptionsError, match="even_decoder_rows"):
        edgeseq.load(str(tiny_package("t5", "int8")[0]), even_decoder_rows="yes")


def test_the_runner_follows_this_cpu_for_a_package_that_recommends_a_drafter():
    """The shipped package recommends input drafting; loaded with int8 products its passes
    take even rows exactly where this CPU pairs rows, and never when told not to."""
    import edgeseq
    pairs = DecoderRows(DEFAULT_DECODER.read_bytes()).in_pairs
    engine = edgeseq.load("default", threads=1, fp32_decoder_products=False)
    assert engine.runner.sessions.even_rows == pairs
    engine = edgeseq.load("default", threads=1, fp32_decoder_products=False, even_decoder_rows=False)
    assert not engine.runner.sessions.even_rows
    engine = edgeseq.load("default", threads=1, fp32_decoder_products=True, even_decoder_rows=True)
    assert not engine.runner.sessions.even_rows  # fp32 products: rows alike alone


def test_a_product_onnxruntime_cannot_run_is_neither_and_raises_nothing(monkeypatch):
    """An onnxruntime build without this product (or a kind it refuses): no answer, no crash."""
    assert row_grouping(NBitsKind(8, 0, 4)) is None  # a block size onnxruntime refuses

    def refuses(*args, **kwargs):
        raise RuntimeError("no MatMulNBits in this build")
    monkeypatch.setattr(ort, "InferenceSession", refuses)
    assert row_grouping(NBitsKind(8, 128, 4)) is None


def test_a_load_asks_the_cpu_once_for_both_choices(monkeypatch):
    """fp32 products and even rows both read how this CPU computes the decoder's rows: the
    shipped package (one kind of product) is probed once, not once per choice."""
    import edgeseq
    import edgeseq.runtime.decoder_products as decoder_products
    asked = []
    monkeypatch.setattr(decoder_products, "integer_gemm_saturates", lambda flags: False)
    monkeypatch.setattr(nbits_rows, "row_grouping", lambda kind, threads=1: asked.append(kind) or ALONE)
    engine = edgeseq.load("default", threads=1)
    assert not engine.runner.sessions.fp32_products and not engine.runner.sessions.even_rows
    assert asked == [NBitsKind(8, 128, 4)]
