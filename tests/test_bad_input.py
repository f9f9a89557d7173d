"""Bad packages and bad inputs give clear, typed errors before onnxruntime sees them."""
from __future__ import annotations

import json
import shutil

import pytest

import edgeseq
from edgeseq.errors import InputError, OptionsError, PackageError, ProviderError


@pytest.fixture
def package_copy(tiny_package, tmp_path):
    src = tiny_package("bart", "fp32")[0]
    dst = tmp_path / "pkg"
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="module")
def engine(tiny_package):
    return edgeseq.load(str(tiny_package("bart", "fp32")[0]), threads=1)


def test_missing_directory_and_missing_manifest(tmp_path):
    with pytest.raises(PackageError, match="not a model package directory"):
        edgeseq.load(str(tmp_path / "nope"))
    with pytest.raises(PackageError, match="no manifest.json"):
        edgeseq.load(str(tmp_path))


@pytest.mark.parametrize("name", ["decoder.onnx", "weights.bin", "encoder.onnx"])
def test_missing_file_is_named(package_copy, name):
    (package_copy / name).unlink()
    with pytest.raises(PackageError, match=f"{name} is missing"):
        edgeseq.load(str(package_copy))


def test_corrupt_file_fails_its_hash_and_is_named(package_copy):
    data = bytearray((package_copy / "weights.bin").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (package_copy / "weights.bin").write_bytes(bytes(data))
    with pytest.raises(PackageError, match="weights.bin does not match its sha256") as err:
        edgeseq.load(str(package_copy))
    assert str(err.value).startswith(f"{package_copy}: ")  # which package, of a target and a draft


def test_truncated_file_is_reported(package_copy):
    path = package_copy / "decoder.onnx"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(PackageError, match="decoder.onnx has 100 bytes"):
        edgeseq.load(str(package_copy))


def _edit_manifest(package, edit):
    path = package / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_manifest_that_does_not_match_its_graphs(package_copy):
    def fewer_layers(m):
        m["arch"]["decoder_layers"] -= 1
        m["tensors"]["decoder"]["inputs"] = [n for n in m["tensors"]["decoder"]["inputs"]
                                             if not n.endswith(".2")]
        m["tensors"]["decoder"]["outputs"] = [n for n in m["tensors"]["decoder"]["outputs"]
                                              if not n.endswith(".2")]
        m["tensors"]["encoder"]["outputs"] = [n for n in m["tensors"]["encoder"]["outputs"]
                                              if not n.endswith(".2")]
    _edit_manifest(package_copy, fewer_layers)
    with pytest.raises(PackageError, match="do not match the manifest"):
        edgeseq.load(str(package_copy))


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(schema_version=99), "schema version 99 is not supported"),
    (lambda m: m.pop("arch"), "manifest is malformed"),
    (lambda m: m["files"].update({"../escape.bin": {"sha256": "0", "bytes": 1}}), "not a plain name"),
    (lambda m: m["files"].update({"/etc/passwd": {"sha256": "0", "bytes": 1}}), "not a plain name"),
])
def test_bad_manifests_are_refused(package_copy, edit, message):
    _edit_manifest(package_copy, edit)
    with pytest.raises(PackageError, match=message):
        edgeseq.load(str(package_copy))


def test_manifest_that_is_not_json(package_copy):
    (package_copy / "manifest.json").write_text("{not json")
    with pytest.raises(PackageError, match="not valid JSON"):
        edgeseq.load(str(package_copy))


def test_symlink_leaving_the_package_is_refused(package_copy, tmp_path):
    outside = tmp_path / "outside.bin"
    shutil.move(package_copy / "weights.bin", outside)
    (package_copy / "weights.bin").symlink_to(outside)
    with pytest.raises(PackageError, match="points outside the package"):
        edgeseq.load(str(package_copy))


def test_unknown_provider_is_refused_and_missing_one_falls_back(tiny_package):
    pkg = str(tiny_package("bart", "fp32")[0])
    with pytest.raises(ProviderError, match="unknown provider 'tpu'"):
        edgeseq.load(pkg, provider="tpu")
    with pytest.warns(RuntimeWarning, match="running on CPU"):
        engine = edgeseq.load(pkg, provider="coreml")
    assert engine.providers()["decoder"] == ["CPUExecutionProvider"]


@pytest.mark.parametrize("inputs, message", [
    ("", "ids-only"), ([], "empty input list"), ([[]], "empty token id list"),
    ([5, 999], "token ids must be in"), ([-1, 4], "token ids must be in"),
    (3.5, "inputs must be"), ([[1, 2], "a"], "inputs must be"),
])
def test_bad_inputs(engine, inputs, message):
    with pytest.raises(InputError, match=message):
        engine.generate(inputs, max_new_tokens=3)


def test_input_longer_than_the_model_allows(engine):
    limit = engine.arch.max_source_positions
    with pytest.raises(InputError, match=f"at most {limit}"):
        engine.generate([5] * (limit + 1), max_new_tokens=3)
    assert engine.generate([5] * (limit + 1), max_new_tokens=3, truncate_input=True).token_ids


def test_too_many_new_tokens_for_learned_positions(engine):
    with pytest.raises(InputError, match="decoder positions"):
        engine.generate([5, 6], max_new_tokens=engine.arch.max_target_positions)


@pytest.mark.parametrize("options, name", [
    (dict(max_new_tokens=0), "max_new_tokens"), (dict(min_new_tokens=-1), "min_new_tokens"),
    (dict(max_new_tokens=4, min_new_tokens=5), "min_new_tokens"),
    (dict(do_sample=True, top_p=0.0), "top_p"), (dict(do_sample=True, top_p=1.5), "top_p"),
    (dict(num_beams=0), "num_beams"), (dict(do_sample=True, temperature=0), "temperature"),
    (dict(do_sample=True, top_k=-2), "top_k"), (dict(top_k=5), "top_k only apply"),
    (dict(do_sample=True, num_beams=2), "beam"),
    (dict(exit_threshold=0.5, exit_layers=(99,)), "exit_layers"),
    (dict(exit_threshold=0.5, exit_layers=(0,)), "exit_layers"),
    (dict(exit_threshold=0.5, exit_layers=()), "exit_layers"),
])
def test_options_are_validated_up_front_and_named(engine, options, name):
    with pytest.raises(OptionsError, match=name):
        engine.generate([5, 6], **options)


def test_a_call_whose_caches_exceed_the_machines_memory_is_refused_up_front(engine, monkeypatch):
    from edgeseq.errors import MemoryBudgetError
    from edgeseq.runtime import memory
    monkeypatch.setattr(memory, "physical_memory_bytes", lambda: 64 * memory.MB)
    with pytest.raises(MemoryBudgetError, match="KV caches need .* more than this machine's 64 MB"):
        engine.generate([[5, 6]] * 200, num_beams=4, max_new_tokens=64)
    assert engine.generate([[5, 6]] * 2, num_beams=4, max_new_tokens=8)  # small calls go on


def test_text_on_ids_only_package_says_so(engine):
    with pytest.raises(InputError, match="ids-only"):
        engine.generate("hello")


def test_unknown_architecture_lists_supported(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel
    from edgeseq.errors import UnsupportedModelError
    from edgeseq.export import export_checkpoint
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50)).save_pretrained(tmp_path)
    with pytest.raises(UnsupportedModelError, match="t5, bart, mbart, marian"):
        export_checkpoint(tmp_path, tmp_path / "out")


def test_an_onnxruntime_older_than_supported_is_named_with_what_to_install(monkeypatch):
    from edgeseq.errors import OnnxruntimeVersionError
    from edgeseq.runtime import providers
    with pytest.raises(OnnxruntimeVersionError, match=r"1\.23 or later, found 1\.22\.1.*pip install"):
        providers.check_onnxruntime("1.22.1")
    for version in ("1.23.0", "1.32.0", "1.40.0.dev20270101", "2.0.0"):
        providers.check_onnxruntime(version)
    monkeypatch.setattr(providers.ort, "__version__", "1.20.1")
    with pytest.raises(OnnxruntimeVersionError):
        edgeseq.load("default")


@pytest.mark.parametrize("flags, message", [
    (["--memory-budget", "inf"], "finite number of MB"), (["--memory-budget", "nan"], "finite"),
    (["--memory-budget", "-5"], "finite number of MB > 0"),
    (["--memory-budget", "300", "--batch", "0"], "batch must be an int >= 1"),
    (["--memory-budget", "300", "--source-length", "-100"], "source_length must be an int >= 1"),
    (["--memory-budget", "300", "--max-new-tokens", "1000000"], "max_new_tokens must be <= 8192"),
    (["--memory-budget", "300", "--max-draft", "-3"], "draft must be an int >= 0"),
])
def test_plan_refuses_numbers_that_mean_nothing(tiny_package, flags, message, capsys):
    from edgeseq.cli import main
    assert main(["plan", str(tiny_package("bart", "fp32")[0])] + flags) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_generation_budget_must_be_finite(engine):
    with pytest.raises(OptionsError, match="memory_budget_mb must be a finite number"):
        engine.generate([5, 6], memory_budget_mb=float("inf"))


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_the_demo_refuses_a_port_that_cannot_exist(port, capsys):
    from edgeseq.cli import main
    with pytest.raises(SystemExit) as usage:  # argparse's usage error, before any model loads
        main(["demo", "--port", port])
    assert usage.value.code == 2 and "a TCP port is 0..65535" in capsys.readouterr().err
