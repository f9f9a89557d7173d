"""The manifest is the contract: a manifest whose fields have the wrong type or range, or
that does not match its graphs, is refused at load with a PackageError naming the
package, the field and both values; never a raw onnxruntime, numpy or tokenizers error
later, never silently wrong output."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest

import edgeseq
from edgeseq import graph_check
from edgeseq.errors import InputError, PackageError
from edgeseq.manifest import sha256_file

DEFAULT_MODEL = Path(edgeseq.__file__).parent / "default_model"  # T5, 4,000 tokens, d_model 128


@pytest.fixture
def package(tmp_path):
    dst = tmp_path / "pkg"
    shutil.copytree(DEFAULT_MODEL, dst)
    return dst


def _edit(package: Path, edit) -> None:
    path = package / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _set(section: str | None, **values):
    return lambda m: (m[section] if section else m).update(values)


def _rehash(package: Path, file: str) -> None:
    _edit(package, lambda m: m["files"].update({file: {
        "sha256": sha256_file(package / file), "bytes": (package / file).stat().st_size}}))


def _refused(package: Path, message: str) -> str:
    with pytest.raises(PackageError, match=message) as err:
        edgeseq.load(str(package), threads=1)
    assert str(package) in str(err.value)  # the package is named
    return str(err.value)


# -- the manifest against its graphs ------------------------------------------------------
def test_a_manifest_d_model_that_its_graphs_do_not_have_is_named(package):
    _edit(package, _set("arch", d_model=256))
    _refused(package, r"decoder.onnx input 'hidden_in' has size 128 in dimension 2, but the "
                      r"manifest's arch.d_model is 256")


@pytest.mark.parametrize("field, value, message", [
    ("num_heads", 8, r"encoder.onnx output 'cross_key.0' has size 4 in dimension 1, but the "
                     r"manifest's arch.num_heads is 8"),
    ("head_dim", 16, r"'cross_key.0' has size 32 in dimension 3, but the manifest's "
                     r"arch.head_dim is 16"),
    ("vocab_size", 100, r"output 'logits' has size 4000 in dimension 2, but the manifest's "
                        r"arch.vocab_size is 100"),
    ("vocab_size", 100000, r"'logits' has size 4000 .* arch.vocab_size is 100000"),
])
def test_head_and_vocabulary_sizes_the_graphs_do_not_have_are_named(package, field, value,
                                                                     message):
    _edit(package, _set("arch", **{field: value}))
    _refused(package, message)


def test_a_graph_input_of_another_element_type_is_named(package):
    model = onnx.load(str(package / "decoder.onnx"), load_external_data=False)
    next(i for i in model.graph.input if i.name == "input_ids").type.tensor_type.elem_type = \
        onnx.TensorProto.INT32
    (package / "decoder.onnx").write_bytes(model.SerializeToString())
    _rehash(package, "decoder.onnx")
    _refused(package, r"decoder.onnx input 'input_ids' is int32; edgeseq's runtime uses int64")


def test_the_reader_reads_the_types_onnx_reads():
    for file in ("encoder.onnx", "decoder.onnx"):
        data = (DEFAULT_MODEL / file).read_bytes()
        want = onnx.load_from_string(data).graph
        got = graph_check.read_model(data).types
        for value in [*want.input, *want.output]:
            tensor = value.type.tensor_type
            dims = tuple(d.dim_value if d.HasField("dim_value") else d.dim_param
                         for d in tensor.shape.dim)
            assert got[value.name] == graph_check.TensorType(tensor.elem_type, dims)


@pytest.fixture(scope="module")
def whisper_package(tmp_path_factory):
    """A tiny random Whisper (80 mels, 30 s windows), exported without validation."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from edgeseq.export import export_checkpoint
    from tiny_models import build_tiny_whisper
    root = tmp_path_factory.mktemp("whisper")
    build_tiny_whisper(root / "ck")
    export_checkpoint(root / "ck", root / "pkg", quant="int8", validate=False)
    edgeseq.load(str(root / "pkg"), threads=1)  # untouched, it loads
    return root / "pkg"


@pytest.mark.parametrize("field, value, message", [
    ("num_mel_bins", 128, r"input 'input_features' has size 80 in dimension 1, but the "
                          r"manifest's arch.num_mel_bins is 128"),
    ("max_source_positions", 750, r"'input_features' has size 3000 in dimension 2, but the "
                                  r"manifest's 2 x arch.max_source_positions is 1500"),
    ("num_heads", 4, r"'cross_key.0' has size 2 in dimension 1, but the manifest's "
                     r"arch.num_heads is 4"),
    ("d_model", 32, r"'hidden_in' has size 16 .* arch.d_model is 32"),
])
def test_a_whisper_manifest_that_its_graphs_do_not_match_is_named(whisper_package, tmp_path,
                                                                   field, value, message):
    package = tmp_path / "pkg"
    shutil.copytree(whisper_package, package)
    _edit(package, _set("arch", **{field: value}))
    _refused(package, message)


# -- each field's type and range -----------------------------------------------------------
@pytest.mark.parametrize("edit, message", [
    (_set("arch", num_heads="4"), r"arch.num_heads must be an integer >= 1, got '4'"),
    (_set("arch", d_model=-1), r"arch.d_model must be an integer >= 1, got -1"),
    (_set("arch", d_model=128.0), r"arch.d_model must be an integer"),
    (_set("arch", max_source_positions=-5), r"arch.max_source_positions must be .* got -5"),
    (_set("arch", pre_norm="yes"), r"arch.pre_norm must be true or false"),
    (_set("arch", norm_eps="x"), r"arch.norm_eps must be a finite number"),
    (_set("arch", family="gpt"), r"arch.family must be one of \['t5', .*got 'gpt'"),
    (_set(None, family="bart"), r"family 'bart' differs from arch.family 't5'"),
    (_set("special_tokens", decoder_start=99999),
     r"special_tokens.decoder_start must be an integer 0..3999, got 99999"),
    (_set("special_tokens", decoder_start=None), r"special_tokens.decoder_start .* got None"),
    (_set("special_tokens", eos=99999), r"special_tokens.eos must be an integer 0..3999"),
    (_set("special_tokens", eos=-1), r"special_tokens.eos .* got -1"),
    (_set("special_tokens", eos="1"), r"special_tokens.eos .* got '1'"),
    (_set("special_tokens", eos=True), r"special_tokens.eos .* got True"),
    (_set("special_tokens", sep=3), r"special_tokens has unknown fields \['sep'\]"),
    (_set("generation", suppress_tokens=5), r"generation.suppress_tokens must be a list"),
    (_set("generation", suppress_tokens=[7, 99999]), r"generation.suppress_tokens\[\] .* 99999"),
    (_set("generation", forced_bos=99999), r"generation.forced_bos must be an integer 0..3999"),
    (_set("generation", no_repeat_ngram_size="3"), r"generation.no_repeat_ngram_size must be"),
    (_set("generation", copy_bias="big"), r"generation.copy_bias must be a finite number"),
    (_set("generation", copy_bias=-5.0), r"generation.copy_bias .* got -5.0"),
    (_set("generation", rerank_source="no"), r"generation.rerank_source must be true or false"),
    (_set("generation", draft="bogus"),
     r"generation.draft must be one of \['input', 'layers', 'ngram'\] or null, got 'bogus'"),
    (_set("exits", layers=["a"]), r"exits.layers\[\] must be an integer >= 1, got 'a'"),
    (_set("exits", layers=[0, 2]), r"exits.layers\[\] must be an integer >= 1, got 0"),
    (_set("exits", layers=[1, 9]), r"exits.layers \[9\] are past .* arch.decoder_layers 4"),
    (_set("exits", shared_head="no"), r"exits.shared_head must be true or false"),
    (_set("exits", draft_vocab={"x": 10}), r"exits.draft_vocab names 'x'"),
    (_set("graph_weight_bytes", **{"encoder.onnx": "x"}),
     r"graph_weight_bytes\['encoder.onnx'\] must be an integer >= 0, got 'x'"),
    (_set("graph_weight_bytes", **{"encoder.onnx": -1e12}),
     r"graph_weight_bytes.* got -1000000000000.0"),
    (_set("graph_weight_bytes", **{"extra.onnx": 5}), r"graph_weight_bytes names 'extra.onnx'"),
    (_set(None, quant=None), r"quant must be one of \['fp32', 'fp16', 'int8', 'int4'\], got None"),
    (_set(None, quant="bogus"), r"quant must be one of .* got 'bogus'"),
    (_set(None, schema_version=True), r"schema version True is not supported"),
    (_set(None, has_tokenizer="yes"), r"has_tokenizer must be true or false"),
    (_set(None, row_invariant_decoder="true"), r"row_invariant_decoder must be true or false"),
    (_set(None, generation=None), r"generation must be a JSON object, got None"),
])
def test_a_manifest_field_of_the_wrong_type_or_range_is_named(package, edit, message):
    _edit(package, edit)
    _refused(package, message)


def test_the_manifest_accepts_every_quantization_the_exporter_writes():
    from edgeseq.export.weight_formats import Quant
    from edgeseq.manifest import QUANTS
    assert set(QUANTS) == {q.value for q in Quant}


# -- the tokenizer ------------------------------------------------------------------------
@pytest.mark.parametrize("content", [b'{"not": "a tokenizer"}', b"\xff\xfe\x00\x01binary"])
def test_a_tokenizer_json_that_tokenizers_cannot_read_is_named(package, content):
    (package / "tokenizer.json").write_bytes(content)
    _rehash(package, "tokenizer.json")
    _refused(package, r"tokenizer.json is not a tokenizer the `tokenizers` library can read")


def test_a_tokenizer_giving_ids_past_the_models_vocabulary_is_named_at_the_input(package):
    """Some checkpoints' tokenizers have more tokens than their embeddings: such a package
    loads (most text never meets those tokens), and text that does is named, not its ids."""
    tokenizer = json.loads((package / "tokenizer.json").read_text())
    tokenizer["added_tokens"].append({"id": 4000, "content": "<beyond>", "single_word": False,
                                      "lstrip": False, "rstrip": False, "normalized": False,
                                      "special": False})
    (package / "tokenizer.json").write_text(json.dumps(tokenizer))
    _rehash(package, "tokenizer.json")
    engine = edgeseq.load(str(package), threads=1)
    assert engine.generate("Hello there.", max_new_tokens=4).token_ids
    with pytest.raises(InputError, match="tokenizer gave token id 4000, past the model's "
                                         "vocabulary of 4000"):
        engine.generate("Hello <beyond> there.", max_new_tokens=4)
