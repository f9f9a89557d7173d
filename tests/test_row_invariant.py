"""fp32, fp16 and int8 decoders are row-invariant: every row of a k-token pass is bit for
bit the one-token pass at that position, so greedy speculation is exact even at
near-ties (export/row_invariant.py)."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

import edgeseq
from edgeseq import names
from edgeseq.export import export_checkpoint
from edgeseq.export.row_invariant import all_nodes, pad_attention_queries, upgrade_package
from scripted_drafter import SOURCES


def pass_rows(engine, seed: int = 0, trials: int = 6, steps: int = 14):
    """(one-token pass logits, the same positions' rows of multi-token passes) over
    random sources and tokens: the prefix in one pass, then a pass of k >= 2 tokens."""
    runner, rng = engine.runner, np.random.default_rng(seed)
    vocab = engine.arch.vocab_size
    for _ in range(trials):
        ids = rng.integers(3, vocab, (1, int(rng.integers(3, 12)))).astype(np.int64)
        state = runner.encode(ids, np.ones_like(ids))
        tokens = rng.integers(3, vocab, (1, steps)).astype(np.int64)
        one_by_one = runner.new_cache(1, steps + 1)
        single = [runner.step(tokens[:, i:i + 1], state, one_by_one)[0, 0] for i in range(steps)]
        together = runner.new_cache(1, steps + 1)
        prefix = int(rng.integers(1, steps - 2))
        runner.step(tokens[:, :prefix], state, together)
        multi = runner.step(tokens[:, prefix:], state, together)[0]
        yield np.stack(single[prefix:]), multi


def decoder_ops(package) -> list[onnx.NodeProto]:
    model = onnx.load(str(package / names.DECODER_FILE), load_external_data=False)
    return list(all_nodes(model.graph))


@pytest.mark.parametrize("family", ["t5", "bart", "marian"])
@pytest.mark.parametrize("quant", ["fp32", "fp16", "int8", "int8/fp32-products"])
def test_every_row_of_a_multi_token_pass_is_bitwise_the_one_token_pass(tiny_package, family,
                                                                       quant):
    """int8/fp32-products: an int8 decoder multiplying in fp32 (runtime/decoder_products.py)."""
    stored, _, products = quant.partition("/")
    engine = edgeseq.load(str(tiny_package(family, stored)[0]), threads=2,
                          fp32_decoder_products=bool(products))
    assert engine.manifest.row_invariant_decoder
    assert bool(engine.runner.sessions.fp32_products) == bool(products)
    for single, multi in pass_rows(engine):
        assert np.array_equal(single, multi)


def test_the_exporter_pads_the_attention_once_per_query_and_once_per_bias(tiny_package):
    ops = decoder_ops(tiny_package("t5", "int8")[0])
    attention = [n for n in ops if n.op_type == "MultiHeadAttention"]
    padded = {n.output[0] for n in ops if n.op_type == "Pad"}
    assert attention and all(n.input[0] in padded and n.input[5] in padded for n in attention)
    # the two biases (self and cross) are padded once each, not once per layer
    assert sum(n.op_type == "Pad" for n in ops) == len(attention) + 2


def test_int4_decoders_are_not_padded(tiny_package):
    """Their 4-bit kernel rounds a lone row differently too on some CPUs: padding the
    attention would cost and not make them exact (passes of an even number of rows do:
    below)."""
    package = tiny_package("t5", "int4")[0]
    assert not any(n.op_type == "Pad" for n in decoder_ops(package))
    assert not edgeseq.load(str(package)).manifest.row_invariant_decoder


@pytest.fixture(scope="module")
def unpadded_package(tiny_checkpoint, tmp_path_factory):
    """An int8 package as the exporter wrote it before row invariance."""
    out = tmp_path_factory.mktemp("old") / "pkg"
    export_checkpoint(tiny_checkpoint("t5"), out, quant="int8", row_invariant=False)
    data = json.loads((out / names.MANIFEST_FILE).read_text())
    data.pop("row_invariant_decoder")  # manifests before it had no such field
    (out / names.MANIFEST_FILE).write_text(json.dumps(data))
    return out


def test_upgrading_an_older_package_makes_its_passes_row_invariant(unpadded_package, tmp_path,
                                                                  capsys):
    import shutil

    from edgeseq.cli import main
    package = tmp_path / "pkg"
    shutil.copytree(unpadded_package, package)
    before = edgeseq.load(str(package), threads=2)
    assert not before.manifest.row_invariant_decoder
    assert main(["info", str(package)]) == 0
    assert "near-ties (exported without row-invariant attention: `edgeseq upgrade PKG` " \
        "adds it" in capsys.readouterr().out  # (and, where they help, even rows)
    assert main(["upgrade", str(package)]) == 0
    assert "decoder made row-invariant" in capsys.readouterr().out
    after = edgeseq.load(str(package), threads=2)  # the manifest's sha256 matches the new graph
    assert after.manifest.row_invariant_decoder
    assert upgrade_package(package) is False  # done already
    for (single, multi), (_, multi_before) in zip(pass_rows(after), pass_rows(before)):
        assert np.array_equal(single, multi)
        # multi-token passes compute what they did: only one-token passes changed
        assert np.array_equal(multi, multi_before)
    for ids in SOURCES:
        plain = after.generate(ids, max_new_tokens=16, min_new_tokens=16)
        assert after.generate(ids, draft="input", max_new_tokens=16,
                              min_new_tokens=16).token_ids == plain.token_ids


def test_int4_and_padded_graphs_are_left_alone(tiny_package, tmp_path):
    import shutil
    for quant in ("int4", "fp32"):  # int4: not made exact by it; fp32: padded already
        copy = tmp_path / quant
        shutil.copytree(tiny_package("t5", quant)[0], copy)
        assert upgrade_package(copy) is False
    model = onnx.load(str(tiny_package("t5", "int8")[0] / names.DECODER_FILE),
                      load_external_data=False)
    with pytest.raises(ValueError, match="padded already"):
        pad_attention_queries(model)


def test_the_cli_exports_row_invariant_unless_told_not_to(tiny_checkpoint, tmp_path, capsys):
    from edgeseq.cli import main
    for flags, expected in (([], True), (["--no-row-invariant"], False)):
        out = tmp_path / f"pkg{len(flags)}"
        assert main(["export", str(tiny_checkpoint("t5")), str(out), "--no-validate", *flags]) == 0
        assert edgeseq.load(str(out)).manifest.row_invariant_decoder is expected
        assert any(n.op_type == "Pad" for n in decoder_ops(out)) is expected
    capsys.readouterr()


@pytest.mark.parametrize("products", [None, False], ids=["as-loaded", "int8-products"])
def test_the_shipped_default_package_is_row_invariant(products):
    """int8-products: multiplying in int8 as stored, where this CPU might pair rows
    (runtime/nbits_rows.py: then every pass runs an even number of rows)."""
    engine = edgeseq.load("default", threads=2, fp32_decoder_products=products)
    assert engine.manifest.row_invariant_decoder
    for single, multi in pass_rows(engine, trials=4):
        assert np.array_equal(single, multi)


@pytest.mark.parametrize("family,batch", [("t5", 1), ("bart", 1), ("t5", 3)])
def test_an_even_number_of_rows_changes_no_row_and_no_cached_key(tiny_package, family, batch):
    """The extra row (a copy of the last token after it) is attended by no other row and
    its logits and K/V are dropped: on a decoder whose rows are exact anyway, passes with
    and without it agree bit for bit, the cache too (3 rows: a column more for all)."""
    plain = edgeseq.load(str(tiny_package(family, "fp32")[0]), threads=2)
    paired = edgeseq.load(str(tiny_package(family, "fp32")[0]), threads=2)
    paired.runner.sessions.even_rows = True  # what a CPU that pairs rows gets
    ids = np.array([[5, 6, 7, 8, 1]] * batch, np.int64) + np.arange(batch)[:, None]
    tokens = np.array([[0, 9, 10, 11, 12, 13, 14]] * batch, np.int64) + np.arange(batch)[:, None]
    caches = []
    for engine in (plain, paired):
        runner = engine.runner
        state = runner.encode(ids, np.ones_like(ids))
        cache = runner.new_cache(batch, 8)
        logits = [runner.step(tokens[:, :1], state, cache), runner.step(tokens[:, 1:4], state, cache),
                  runner.step(tokens[:, 4:6], state, cache), runner.step(tokens[:, 6:], state, cache)]
        assert cache.length == 7
        caches.append((logits, cache.buffer[:, :, :, :, :7].copy()))
    (want, want_cache), (got, got_cache) = caches
    assert [g.shape for g in got] == [w.shape for w in want]
    assert all(np.array_equal(g, w) for g, w in zip(got, want))
    assert np.array_equal(got_cache, want_cache)


def test_no_row_is_added_past_the_last_learned_position(tiny_package):
    """BART's positions are learned: a pass ending at the last one runs its rows as they
    are (a row after it would have no position), with the logits of a pass without the
    extra row."""
    logits = []
    for even_rows in (False, True):
        engine = edgeseq.load(str(tiny_package("bart", "fp32")[0]), threads=2)
        engine.runner.sessions.even_rows = even_rows
        runner, last = engine.runner, engine.arch.max_target_positions - 1
        ids = np.array([[5, 6, 7, 1]], np.int64)
        state = runner.encode(ids, np.ones_like(ids))
        cache = runner.new_cache(1, last + 1)
        tokens = np.arange(3, last + 4, dtype=np.int64)[None, :] % 50 + 3
        runner.step(tokens[:, :last], state, cache)  # positions 0 .. last - 1
        logits.append(runner.step(tokens[:, last:last + 1], state, cache))  # the last position
        assert cache.length == last + 1
    assert np.array_equal(logits[0], logits[1])


def test_the_upgrade_command_refuses_a_folder_that_is_no_package_in_one_line(tmp_path, capsys):
    from edgeseq.cli import main
    assert main(["upgrade", str(tmp_path)]) != 0
    err = capsys.readouterr().err
    assert err.startswith("edgeseq: error: ") and "no manifest.json" in err
    assert "Traceback" not in err


def test_the_upgrade_refuses_a_package_whose_decoder_is_corrupt(unpadded_package, tmp_path):
    import shutil

    from edgeseq.errors import PackageError
    package = tmp_path / "pkg"
    shutil.copytree(unpadded_package, package)
    (package / names.DECODER_FILE).write_bytes(b"not a graph")
    with pytest.raises(PackageError, match="decoder.onnx"):
        upgrade_package(package)


def test_an_upgrade_interrupted_while_writing_leaves_the_package_as_it_was(unpadded_package,
                                                                          tmp_path, monkeypatch):
    """Both files are written in full before either replaces its original: interrupted
    (or out of disk) while writing the manifest, the package still loads, unchanged, with
    no temporary file left in it, and a later upgrade succeeds."""
    import os
    import shutil

    import edgeseq.export.row_invariant as row_invariant
    from edgeseq.errors import PackageError
    from edgeseq.manifest import sha256_file
    package = tmp_path / "pkg"
    shutil.copytree(unpadded_package, package)
    before = {p.name: sha256_file(p) for p in package.iterdir()}
    real_fdopen = os.fdopen

    def full_disk_on_the_manifest(handle, mode):
        out = real_fdopen(handle, mode)
        if len(list(package.glob(".*.tmp"))) > 1:  # the decoder's is staged: now the manifest's
            out.close()
            raise OSError(28, "No space left on device")
        return out
    monkeypatch.setattr(row_invariant.os, "fdopen", full_disk_on_the_manifest)
    with pytest.raises(PackageError, match="could not write the upgraded package"):
        upgrade_package(package)
    monkeypatch.undo()
    assert {p.name: sha256_file(p) for p in package.iterdir()} == before
    assert not edgeseq.load(str(package)).manifest.row_invariant_decoder
    assert upgrade_package(package) and edgeseq.load(str(package)).manifest.row_invariant_decoder
    assert not list(package.glob(".*"))


@pytest.mark.parametrize("family", ["t5", "bart"])
def test_even_rows_make_a_decoder_without_padded_attention_row_invariant(tiny_package,
                                                                         unpadded_package, family):
    """int4 decoders, and int8 ones exported before row invariance, have no padded
    attention: asked for even rows, every pass has two query rows or more (and products
    that compute rows alike alone or in pairs), so each row of a k-token pass is the
    one-token pass at its position, bit for bit."""
    from edgeseq.runtime.nbits_rows import DecoderRows
    for package in (tiny_package(family, "int4")[0], unpadded_package):
        rows = DecoderRows((package / names.DECODER_FILE).read_bytes())
        if not rows.even_rows_make_exact(False):
            pytest.skip("this CPU's products compute rows alike neither alone nor in pairs")
        engine = edgeseq.load(str(package), threads=2, fp32_decoder_products=False,
                              even_decoder_rows=True)
        assert not engine.manifest.row_invariant_decoder and engine.runner.sessions.even_rows
        for single, multi in pass_rows(engine, trials=8):
            assert np.array_equal(single, multi)
        # unasked, a package that recommends no drafter keeps its passes as they come
        assert not edgeseq.load(str(package), threads=2).runner.sessions.even_rows
