"""Early-exit models with a separate head per exit (export/exit_heads.py): the package
routes each pass to the head of the exit it ended at, matching PyTorch; missing or
misshapen heads are refused at export."""
from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
import torch

import edgeseq
from edgeseq.errors import UnsupportedModelError
from edgeseq.export import export_checkpoint
from edgeseq.export.row_invariant import all_nodes
from edgeseq.runtime.decoder import LayerPlan
from tiny_models import VOCAB

SOURCE = [5, 9, 13, 22, 40, 7, 1]
TARGET = [0, 17, 33, 8, 61, 2, 44]  # decoder start, then forced tokens


DRAFT_VOCAB = [1, 2, 5, 8, 13, 17, 33, 44, 61, 90]  # a draft head over these tokens only


def _with_exit_heads(checkpoint, out, exits=(1, 2), heads=(1, 2), shape=None, vocab=None):
    from safetensors.torch import save_file
    shutil.copytree(checkpoint, out)
    config = json.loads((out / "config.json").read_text())
    d = config["d_model"]
    gen = torch.Generator().manual_seed(3)
    rows = VOCAB if vocab is None else len(vocab)
    tensors = {f"exit_heads.{k}.weight": torch.randn(*(shape or (rows, d)), generator=gen)
               for k in heads}
    if vocab is not None:
        tensors.update({f"exit_heads.{k}.vocab": torch.tensor(vocab) for k in heads})
    save_file(tensors, str(out / "exit_heads.safetensors"))
    (out / "edgeseq_exits.json").write_text(json.dumps(
        {"exit_trained": True, "shared_head": False, "exits": [*exits, config["num_decoder_layers"]]}))
    return out, tensors


def _reference_logits(checkpoint, heads: dict, k: int) -> np.ndarray:
    """PyTorch: decoder layer k's output -> the shared final norm -> exit head k."""
    import transformers as tf
    model = tf.AutoModelForSeq2SeqLM.from_pretrained(checkpoint).eval()
    with torch.no_grad():
        out = model(input_ids=torch.tensor([SOURCE]), decoder_input_ids=torch.tensor([TARGET]),
                    output_hidden_states=True)
        if k == model.config.num_decoder_layers:
            return out.logits[0].numpy()
        hidden = model.decoder.final_layer_norm(out.decoder_hidden_states[k])
        logits = (hidden @ heads[f"exit_heads.{k}.weight"].T)[0].numpy()
    vocab = heads.get(f"exit_heads.{k}.vocab")
    if vocab is None:
        return logits
    full = np.full((logits.shape[0], model.config.vocab_size), -1e9, np.float32)
    full[:, vocab.numpy()] = logits  # tokens outside a draft vocabulary cannot be drafted
    return full


def _assert_matches_pytorch(actual: np.ndarray, expected: np.ndarray) -> None:
    """Within export's stated fp32 tolerance: 1e-3 of the reference's largest logit (this
    model's reach ~35, and how onnxruntime's and PyTorch's kernels round differs between
    CPUs: up to 0.08 on an AMD EPYC, where a flat 1e-3 failed).
    Draft heads' -1e9 outside their vocabulary must match exactly."""
    scale = float(np.abs(expected[expected > -1e8]).max())
    np.testing.assert_allclose(actual, expected, atol=1e-3 * max(1.0, scale), rtol=0)


def _package_logits(engine, k: int) -> np.ndarray:
    runner = engine.runner
    state = runner.encode(np.array([SOURCE]), np.ones((1, len(SOURCE)), np.int64))
    plan = LayerPlan.first(k, engine.arch.decoder_layers)
    return runner.step(np.array([TARGET]), state, runner.new_cache(1, len(TARGET)), plan)[0]


def _exported(tiny_checkpoint, tmp_path_factory, **heads_kwargs):
    """(checkpoint dir, its exit heads, the loaded fp32 package)."""
    src, heads = _with_exit_heads(tiny_checkpoint("t5v11"), tmp_path_factory.mktemp("exits") / "ck",
                                  **heads_kwargs)
    out = tmp_path_factory.mktemp("exits-pkg") / "pkg"
    export_checkpoint(src, out, quant="fp32")
    return src, heads, edgeseq.load(str(out), threads=1)


@pytest.fixture(scope="module")
def separate(tiny_checkpoint, tmp_path_factory):
    return _exported(tiny_checkpoint, tmp_path_factory)


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("heads", ["separate", "draft_vocab"])
def test_each_exit_reads_its_own_head_like_pytorch(heads, k, request):
    """Whole-vocabulary heads, and draft heads that score only DRAFT_VOCAB (-1e9 elsewhere)."""
    src, weights, engine = request.getfixturevalue(heads)
    _assert_matches_pytorch(_package_logits(engine, k), _reference_logits(src, weights, k))


def test_the_manifest_says_the_heads_are_separate(separate):
    _, _, engine = separate
    assert engine.manifest.exits["shared_head"] is False
    assert engine.manifest.exits["exit_trained"] is True


def test_generation_at_an_exit_uses_that_exits_head(separate):
    src, heads, engine = separate
    out = engine.generate(SOURCE, max_new_tokens=1, min_new_tokens=1, exit_after=1)
    first = _reference_logits(src, heads, 1)[0]
    first[engine.manifest.special.eos] = -np.inf  # min_new_tokens=1 bans EOS first
    assert out.token_ids == [int(first.argmax())]


def test_a_pass_ending_where_no_exit_head_is_uses_the_models_head(tiny_checkpoint, tmp_path):
    import transformers as tf
    src, _ = _with_exit_heads(tiny_checkpoint("t5v11"), tmp_path / "ck", exits=(2,), heads=(2,))
    export_checkpoint(src, tmp_path / "pkg", quant="fp32", validate=False)
    engine = edgeseq.load(str(tmp_path / "pkg"), threads=1)
    model = tf.AutoModelForSeq2SeqLM.from_pretrained(src).eval()
    with torch.no_grad():
        out = model(input_ids=torch.tensor([SOURCE]), decoder_input_ids=torch.tensor([TARGET]),
                    output_hidden_states=True)
        expected = model.lm_head(model.decoder.final_layer_norm(out.decoder_hidden_states[1]))[0]
    _assert_matches_pytorch(_package_logits(engine, 1), expected.numpy())


@pytest.fixture(scope="module")
def draft_vocab(tiny_checkpoint, tmp_path_factory):
    return _exported(tiny_checkpoint, tmp_path_factory, vocab=DRAFT_VOCAB)


def test_layer_drafting_from_draft_heads_is_plain_greedy(draft_vocab):
    _, _, engine = draft_vocab
    plain = engine.generate(SOURCE, max_new_tokens=24)
    drafted = engine.generate(SOURCE, max_new_tokens=24, draft="layers", adaptive_draft=False,
                              exit_layer=2, max_draft=3)
    assert drafted.token_ids == plain.token_ids
    assert drafted.stats.speculation["drafted"] > 0


@pytest.mark.parametrize("kwargs, message", [
    (dict(heads=(1,)), "no exit_heads.2.weight"),
    (dict(shape=(VOCAB, 7)), "expected"),
    (dict(vocab=[1, 2, 2]), "distinct token ids"),
    (dict(vocab=[1, VOCAB]), "distinct token ids"),
    (dict(vocab=[1, 2], shape=(3, 16)), "expected"),
])
def test_missing_or_misshapen_heads_are_refused(tiny_checkpoint, tmp_path, kwargs, message):
    src, _ = _with_exit_heads(tiny_checkpoint("t5v11"), tmp_path / "ck", **kwargs)
    with pytest.raises(UnsupportedModelError, match=message):
        export_checkpoint(src, tmp_path / "pkg", quant="fp32", validate=False)


def test_exit_heads_from_a_directory_without_their_manifest_are_refused(tiny_checkpoint, tmp_path):
    (tmp_path / "heads").mkdir()
    with pytest.raises(UnsupportedModelError, match="has no edgeseq_exits.json"):
        export_checkpoint(tiny_checkpoint("t5v11"), tmp_path / "pkg", quant="fp32", validate=False,
                          exit_heads=tmp_path / "heads")


@pytest.mark.parametrize("vocab", [None, DRAFT_VOCAB])
def test_int8_exit_heads_multiplying_in_fp32_keep_layer_drafting_plain_greedy(
        tiny_checkpoint, tmp_path, vocab):
    """Each exit's head sits in its own If branch: the load-time fp32 rewrite
    (runtime/decoder_products.py) reaches them all, and drafting stays exact."""
    src, _ = _with_exit_heads(tiny_checkpoint("t5v11"), tmp_path / "ck", vocab=vocab)
    export_checkpoint(src, tmp_path / "pkg", quant="int8", validate=False)
    engine = edgeseq.load(str(tmp_path / "pkg"), threads=1, fp32_decoder_products=True)
    stored = onnx.load(str(tmp_path / "pkg" / "decoder.onnx"), load_external_data=False)
    weights = {n.input[1] for n in all_nodes(stored.graph) if n.op_type == "MatMulNBits"}
    assert {f"exit_head.{k}.w_int8" for k in (1, 2)} <= weights  # in their own If branches
    assert set(engine.runner.sessions.fp32_products) == weights  # every one rewritten
    plain = engine.generate(SOURCE, max_new_tokens=24)
    for exit_layer in (1, 2):
        drafted = engine.generate(SOURCE, max_new_tokens=24, draft="layers", adaptive_draft=False,
                                  exit_layer=exit_layer, max_draft=3)
        assert drafted.token_ids == plain.token_ids
        assert drafted.stats.speculation["drafted"] > 0
