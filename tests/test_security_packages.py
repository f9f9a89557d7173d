"""Model packages from untrusted sources: every graph is read with edgeseq's own protobuf
reader and refused before onnxruntime sees it when it uses operators the exporter never
emits, points external data outside the package, or does not match the manifest.
Export is atomic: an interrupted export leaves nothing that loads and no partial folder."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgeseq
from edgeseq import graph_check
from edgeseq.errors import PackageError
from edgeseq.manifest import sha256_file


@pytest.fixture
def package_copy(tiny_package, tmp_path):
    dst = tmp_path / "pkg"
    shutil.copytree(tiny_package("bart", "int8")[0], dst)
    return dst


@pytest.fixture
def no_sessions(monkeypatch):
    """Fails the test if onnxruntime is asked to make a session."""
    made = []

    def refuse(*args, **kwargs):
        made.append(args)
        raise AssertionError("an onnxruntime session was made for a refused package")
    monkeypatch.setattr(ort, "InferenceSession", refuse)
    return made


def _rewrite(package: Path, file: str, edit) -> None:
    """Edit a graph with the onnx package, then re-hash it in the manifest, so only the
    graph checks (not the sha256 check) can refuse it."""
    model = onnx.load(str(package / file), load_external_data=False)
    edit(model)
    (package / file).write_bytes(model.SerializeToString())
    path = package / "manifest.json"
    data = json.loads(path.read_text())
    data["files"][file] = {"sha256": sha256_file(package / file),
                           "bytes": (package / file).stat().st_size}
    path.write_text(json.dumps(data))


def _walk(graph: onnx.GraphProto):
    for node in graph.node:
        yield graph, node
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _walk(sub)


# -- the reader --------------------------------------------------------------------------
@pytest.mark.parametrize("case", [("t5", "fp32"), ("bart", "int8"), ("t5v11", "int4"),
                                  ("marian", "fp16"), ("mbart", "int8")])
def test_reader_agrees_with_the_onnx_package(tiny_package, case):
    package = tiny_package(*case)[0]
    for file in ("encoder.onnx", "decoder.onnx"):
        data = (package / file).read_bytes()
        got = graph_check.read_model(data)
        want = onnx.load_from_string(data)
        assert [(n.name, n.op_type, n.domain) for n in got.nodes] == \
            [(n.name, n.op_type, n.domain) for _, n in _walk(want.graph)]
        assert got.inputs == [i.name for i in want.graph.input]
        assert got.outputs == [o.name for o in want.graph.output]
        assert [(t.name, t.entries) for t in got.external] == \
            [(t.name, {e.key: e.value for e in t.external_data}) for t in want.graph.initializer]
        assert got.opset_domains == [o.domain for o in want.opset_import]
        for node in got.nodes:  # the allowlist covers what the exporter emits
            domain = graph_check.DOMAIN_ALIASES.get(node.domain, node.domain)
            assert node.op_type in graph_check.ALLOWED_OPS[domain], node


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_reader_never_crashes_on_corrupt_bytes(tiny_package, data):
    """Truncated, bit-flipped or random bytes: a summary or a PackageError, nothing else."""
    original = (tiny_package("bart", "int8")[0] / "decoder.onnx").read_bytes()
    kind = data.draw(st.sampled_from(["truncate", "flip", "random", "splice"]))
    if kind == "truncate":
        blob = original[:data.draw(st.integers(0, len(original)))]
    elif kind == "flip":
        blob = bytearray(original)
        for _ in range(data.draw(st.integers(1, 8))):
            blob[data.draw(st.integers(0, len(blob) - 1))] ^= data.draw(st.integers(1, 255))
        blob = bytes(blob)
    elif kind == "random":
        blob = data.draw(st.binary(max_size=512))
    else:
        at = data.draw(st.integers(0, len(original)))
        blob = original[:at] + data.draw(st.binary(max_size=64)) + original[at:]
    try:
        graph_check.read_model(blob)
    except PackageError:
        pass


def test_deeply_nested_subgraphs_are_refused_not_recursed():
    leaf = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g", [], [])
    inner = leaf
    for _ in range(graph_check.MAX_GRAPH_DEPTH + 2):
        node = onnx.helper.make_node("If", ["c"], ["y"], then_branch=inner, else_branch=leaf)
        inner = onnx.helper.make_graph([node], "g", [], [])
    model = onnx.helper.make_model(inner)
    with pytest.raises(PackageError, match="nest deeper"):
        graph_check.read_model(model.SerializeToString())


# -- operators ---------------------------------------------------------------------------
def _set_node(pred, **fields):
    def edit(model):
        node = next(n for g, n in _walk(model.graph) if pred(g, n))
        for key, value in fields.items():
            setattr(node, key, value)
    return edit


@pytest.mark.parametrize("edit, message", [
    (_set_node(lambda g, n: g.name == "edgeseq_decoder" and n.op_type == "Range", domain="evil.ops",
               op_type="Exec"),
     r"node '.*' \(Exec\) in decoder.onnx \[main\] uses operator domain 'evil.ops'"),
    (_set_node(lambda g, n: g.name.startswith("layer") and n.op_type == "Add", domain="evil.ops"),
     r"in decoder.onnx \[main/.*_branch\] uses operator domain 'evil.ops'"),
    (_set_node(lambda g, n: g.name.startswith("fill") and n.op_type == "Split", domain="x"),
     r"\[main/n_If_\d+.else_branch/n_If_\d+.then_branch\] uses operator domain 'x'"),
    (_set_node(lambda g, n: n.op_type == "Identity", op_type="Loop"),
     r"uses operator ai.onnx::Loop, which edgeseq's exporter never emits"),
    (_set_node(lambda g, n: n.op_type == "MultiHeadAttention", op_type="Attention"),
     r"uses operator com.microsoft::Attention"),
    (_set_node(lambda g, n: n.op_type == "Shape", domain="ai.onnx.ml"),
     r"uses operator domain 'ai.onnx.ml'"),
    (lambda m: m.opset_import.append(onnx.helper.make_opsetid("evil.ops", 1)),
     r"imports operator domain 'evil.ops'"),
    (lambda m: m.functions.append(onnx.helper.make_function(
        "evil.ops", "F", ["x"], ["y"], [onnx.helper.make_node("Identity", ["x"], ["y"])],
        [onnx.helper.make_opsetid("", 20)])), r"defines 1 model-local function"),
])
def test_operators_outside_the_allowlist_are_refused_before_any_session(
        package_copy, no_sessions, edit, message):
    _rewrite(package_copy, "decoder.onnx", edit)
    with pytest.raises(PackageError, match=message):
        edgeseq.load(str(package_copy))
    assert not no_sessions


def test_ai_onnx_is_the_default_domain(package_copy):
    _rewrite(package_copy, "encoder.onnx", _set_node(lambda g, n: n.op_type == "Gather",
                                                     domain="ai.onnx"))
    edgeseq.load(str(package_copy))


def test_a_whisper_package_passes_the_graph_checks(tmp_path):
    """Whisper's encoder adds Conv; its tiny package must load."""
    from edgeseq.export import export_checkpoint
    from tiny_models import build_tiny_whisper
    build_tiny_whisper(tmp_path / "ck")
    export_checkpoint(tmp_path / "ck", tmp_path / "pkg", quant="int8", validate=False)
    engine = edgeseq.load(str(tmp_path / "pkg"), threads=1)
    assert engine.arch.family.value == "whisper"


# -- external data -----------------------------------------------------------------------
def _set_location(**entries):
    def edit(model):
        found = {e.key: e for e in model.graph.initializer[0].external_data}
        for key, value in entries.items():
            found[key].value = str(value)
    return edit


@pytest.mark.parametrize("edit, message", [
    (_set_location(location="/etc/passwd"),
     r"tensor '.*' in decoder.onnx stores its data at '/etc/passwd', which is an absolute path"),
    (_set_location(location="../pkg/weights.bin"), r"at '../pkg/weights.bin', which leaves the package"),
    (_set_location(location="C:\\weights.bin"), r"which is an absolute path"),
    (_set_location(location="sub/weights.bin"), r"is not a plain file name"),
    (_set_location(location="other.bin"), r"at 'other.bin', which is not a file listed in the manifest"),
    (_set_location(location="encoder.onnx"), r"which is a graph, not a weights file"),
    (_set_location(offset=10**9), r"reaches bytes 1000000000\.\.\d+, outside the file's \d+ bytes"),
    (_set_location(length=-5), r"outside the file"),
    (_set_location(offset="x"), r"non-numeric offset"),
])
def test_external_data_outside_the_package_is_refused(package_copy, no_sessions, edit, message):
    _rewrite(package_copy, "decoder.onnx", edit)
    with pytest.raises(PackageError, match=message):
        edgeseq.load(str(package_copy))
    assert not no_sessions


def test_external_data_in_a_constant_attribute_is_checked(package_copy, no_sessions):
    def edit(model):
        tensor = onnx.numpy_helper.from_array(np.zeros(4, np.float32), "c")
        onnx.external_data_helper.set_external_data(tensor, "/etc/shadow", 0, 16)
        tensor.data_location = onnx.TensorProto.EXTERNAL
        tensor.ClearField("raw_data")
        model.graph.node.append(onnx.helper.make_node("Constant", [], ["c_out"], value=tensor))
    _rewrite(package_copy, "decoder.onnx", edit)
    with pytest.raises(PackageError, match="'/etc/shadow', which is an absolute path"):
        edgeseq.load(str(package_copy))


# -- inputs and outputs ------------------------------------------------------------------
def test_graph_io_is_checked_against_the_manifest_before_any_session(package_copy, no_sessions):
    def rename_input(model):
        model.graph.input[0].name = "sneaky_input"
    _rewrite(package_copy, "encoder.onnx", rename_input)
    with pytest.raises(PackageError, match=r"encoder graph inputs do not match the manifest "
                                           r"\(missing \['input_ids'\], unexpected \['sneaky_input'\]"):
        edgeseq.load(str(package_copy))
    assert not no_sessions


def test_repeated_outputs_are_refused(package_copy, no_sessions):
    def repeat(model):
        model.graph.output.append(model.graph.output[0])
    _rewrite(package_copy, "decoder.onnx", repeat)
    with pytest.raises(PackageError, match=r"decoder graph outputs do not match .*repeated"):
        edgeseq.load(str(package_copy))


# -- files and links ---------------------------------------------------------------------
def test_a_symlink_inside_the_package_is_refused(package_copy, tmp_path):
    shutil.move(package_copy / "weights.bin", package_copy / "real.bin")
    (package_copy / "weights.bin").symlink_to(package_copy / "real.bin")
    with pytest.raises(PackageError, match="'weights.bin' is a symbolic link; a package holds"):
        edgeseq.load(str(package_copy))


def test_a_symlinked_manifest_is_refused(package_copy, tmp_path):
    shutil.move(package_copy / "manifest.json", tmp_path / "manifest.json")
    (package_copy / "manifest.json").symlink_to(tmp_path / "manifest.json")
    with pytest.raises(PackageError, match="manifest.json is a symbolic link"):
        edgeseq.load(str(package_copy))


@pytest.mark.parametrize("name", ["sub/weights.bin", "..", ".", "a\\b", "x\0y"])
def test_member_names_must_be_plain(package_copy, name):
    path = package_copy / "manifest.json"
    data = json.loads(path.read_text())
    data["files"][name] = {"sha256": "0", "bytes": 1}
    path.write_text(json.dumps(data))
    with pytest.raises(PackageError, match="not a plain name"):
        edgeseq.load(str(package_copy))


@pytest.mark.parametrize("entry", [5, {"bytes": "1", "sha256": "0"}, {"bytes": 1}])
def test_malformed_file_entries_are_refused(package_copy, entry):
    path = package_copy / "manifest.json"
    data = json.loads(path.read_text())
    data["files"]["weights.bin"] = entry
    path.write_text(json.dumps(data))
    with pytest.raises(PackageError, match="must give its sha256 and bytes"):
        edgeseq.load(str(package_copy))


def test_a_tokenizer_the_manifest_does_not_hash_is_refused(package_copy):
    path = package_copy / "manifest.json"
    data = json.loads(path.read_text())
    data["has_tokenizer"] = True
    path.write_text(json.dumps(data))
    (package_copy / "tokenizer.json").write_text("{}")
    with pytest.raises(PackageError, match=r"does not list required files \['tokenizer.json'\]"):
        edgeseq.load(str(package_copy))


def test_unknown_schema_versions_name_the_supported_range(package_copy):
    path = package_copy / "manifest.json"
    data = json.loads(path.read_text())
    data["schema_version"] = 0
    path.write_text(json.dumps(data))
    with pytest.raises(PackageError, match=r"version 0 is not supported; this edgeseq reads "
                                           r"versions 1\.\.1"):
        edgeseq.load(str(package_copy))


# -- atomic export -----------------------------------------------------------------------
def _interrupt_on_write(monkeypatch, which: int):
    """Path.write_bytes writes half its data, then raises, on its `which`-th call."""
    calls = []
    real = Path.write_bytes

    def write_bytes(self, data):
        calls.append(self)
        if len(calls) == which:
            real(self, data[:len(data) // 2])
            raise KeyboardInterrupt("simulated interruption mid-write")
        return real(self, data)
    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    return calls


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".partial-" in p.name)


@pytest.mark.parametrize("which", [1, 2])  # encoder.onnx, then decoder.onnx
def test_an_interrupted_export_leaves_nothing_that_loads(tiny_checkpoint, tmp_path,
                                                         monkeypatch, which):
    from edgeseq.export import export_checkpoint
    out = tmp_path / "pkg"
    calls = _interrupt_on_write(monkeypatch, which)
    with pytest.raises(KeyboardInterrupt):
        export_checkpoint(tiny_checkpoint("bart"), out, quant="int8", validate=False)
    assert len(calls) == which and ".partial-" in calls[-1].parent.name
    assert not out.exists() and _leftovers(tmp_path) == []


def test_an_interrupted_re_export_keeps_the_old_package(tiny_checkpoint, tmp_path, monkeypatch):
    from edgeseq.export import export_checkpoint
    out = tmp_path / "pkg"
    export_checkpoint(tiny_checkpoint("bart"), out, quant="int8", validate=False)
    before = {p.name: sha256_file(p) for p in out.iterdir()}
    _interrupt_on_write(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        export_checkpoint(tiny_checkpoint("bart"), out, quant="fp32", validate=False)
    monkeypatch.undo()
    assert {p.name: sha256_file(p) for p in out.iterdir()} == before
    assert _leftovers(tmp_path) == [] and edgeseq.load(str(out)).manifest.quant == "int8"


def test_an_export_interrupted_during_validation_leaves_nothing_that_loads(
        tiny_checkpoint, tmp_path, monkeypatch):
    from edgeseq.export import validate
    from edgeseq.export import export_checkpoint

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt("simulated interruption during validation")
    monkeypatch.setattr(validate, "validate_package", interrupted)
    out = tmp_path / "pkg"
    with pytest.raises(KeyboardInterrupt):
        export_checkpoint(tiny_checkpoint("bart"), out, quant="int8")
    assert not out.exists() and _leftovers(tmp_path) == []


def test_an_export_never_replaces_its_checkpoint_or_a_folder_that_is_no_package(tiny_checkpoint,
                                                                                 tmp_path):
    """Export replaces its output folder whole: into the checkpoint (`export ck ck`), a
    folder holding it, or a folder of other files it would have deleted them (it did)."""
    import shutil

    from edgeseq.errors import ExportError
    from edgeseq.export import export_checkpoint
    checkpoint = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint("bart"), checkpoint)
    kept = {p.name: sha256_file(p) for p in checkpoint.iterdir()}
    for out in (checkpoint, tmp_path):
        with pytest.raises(ExportError, match="would replace the checkpoint"):
            export_checkpoint(checkpoint, out, quant="int8", validate=False)
    notes = tmp_path / "mine"
    notes.mkdir()
    (notes / "notes.txt").write_text("precious")
    with pytest.raises(ExportError, match=r"not an edgeseq package \(it holds notes.txt\)"):
        export_checkpoint(checkpoint, notes, quant="int8", validate=False)
    assert {p.name: sha256_file(p) for p in checkpoint.iterdir()} == kept
    assert (notes / "notes.txt").read_text() == "precious"
    (tmp_path / "empty").mkdir()  # an empty folder, or a package (a re-export), is fine
    for out in (tmp_path / "empty", tmp_path / "empty", checkpoint / "pkg"):
        export_checkpoint(checkpoint, out, quant="int8", validate=False)
        assert edgeseq.load(str(out)).manifest.quant == "int8"
    webapp = tmp_path / "webapp"  # a manifest.json that is not an edgeseq manifest
    webapp.mkdir()
    (webapp / "manifest.json").write_text('{"name": "my app"}')
    (webapp / "index.html").write_text("<html>")
    with pytest.raises(ExportError, match=r"not an edgeseq package \(it holds index.html, manifest.json\)"):
        export_checkpoint(checkpoint, webapp, quant="int8", validate=False)
    (tmp_path / "empty" / "NOTES.md").write_text("mine")  # beside a package it replaces
    with pytest.raises(ExportError, match="holds NOTES.md, which its package does not list"):
        export_checkpoint(checkpoint, tmp_path / "empty", quant="int8", validate=False)
    assert (webapp / "index.html").is_file() and (tmp_path / "empty" / "NOTES.md").is_file()


def test_a_re_export_that_fails_validation_keeps_the_package_there_before(tiny_checkpoint,
                                                                          tmp_path, monkeypatch):
    from edgeseq.export import export_checkpoint, validate
    out = tmp_path / "pkg"
    export_checkpoint(tiny_checkpoint("bart"), out, quant="int8", validate=False)
    before = {p.name: sha256_file(p) for p in out.iterdir()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt("simulated interruption during validation")
    monkeypatch.setattr(validate, "validate_package", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_checkpoint(tiny_checkpoint("bart"), out, quant="fp32")
    assert {p.name: sha256_file(p) for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]  # nothing left aside
