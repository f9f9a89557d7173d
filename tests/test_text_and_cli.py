"""Text packages (real T5 tokenizer), streaming, sampling, and the command line."""
from __future__ import annotations

import json

import numpy as np
import pytest

import edgeseq
from edgeseq.cli import main
from edgeseq.errors import InputError


@pytest.fixture(scope="module")
def text_package(t5_text_package):
    return t5_text_package


def test_text_in_text_out_with_the_real_t5_tokenizer(text_package):
    engine = edgeseq.load(str(text_package), threads=1)
    result = engine.generate("translate English to German: The house is small.",
                             max_new_tokens=12, min_new_tokens=12)
    assert len(result.token_ids) == 12 and isinstance(result.text, str)
    assert result.stats.decoder_passes == 12 and result.stats.first_token_ms > 0
    batch = engine.generate(["a short one", "and a somewhat longer second input"], max_new_tokens=6)
    assert len(batch) == 2


def test_stream_yields_the_text_generate_returns(text_package):
    engine = edgeseq.load(str(text_package), threads=1)
    kw = dict(max_new_tokens=16, min_new_tokens=16)
    pieces = list(engine.stream("summarize: edge devices are small", **kw))
    assert "".join(pieces) == engine.generate("summarize: edge devices are small", **kw).text


def test_stream_can_be_stopped_and_the_engine_stays_usable(text_package):
    engine = edgeseq.load(str(text_package), threads=1)
    stream = engine.stream("hello there", max_new_tokens=32, min_new_tokens=32)
    next(stream)
    stream.close()
    assert len(engine.generate("hello there", max_new_tokens=5, min_new_tokens=5).token_ids) == 5


@pytest.mark.parametrize("text", ["", "   \n\t "])
def test_empty_text_is_refused(text_package, text):
    with pytest.raises(InputError, match="empty"):
        edgeseq.load(str(text_package)).generate(text)


def test_sampling_is_reproducible_with_a_seed_and_respects_top_k(text_package):
    engine = edgeseq.load(str(text_package), threads=1)
    kw = dict(max_new_tokens=10, min_new_tokens=10, do_sample=True, seed=7, top_k=3)
    assert engine.generate("x y z", **kw).token_ids == engine.generate("x y z", **kw).token_ids
    runner = engine.runner
    ids = np.array([engine.codec.encode("x y z")])
    state = runner.encode(ids, np.ones_like(ids))
    first = runner.step(np.array([[0]]), state, runner.new_cache(1, 1))[0, -1]
    top3 = set(np.argsort(-first)[:3].tolist())
    firsts = {engine.generate("x y z", **{**kw, "seed": s}).token_ids[0] for s in range(20)}
    assert firsts <= top3


def test_cli_generate_json_and_info(text_package, capsys):
    assert main(["generate", str(text_package), "hello world", "--json", "--max-new-tokens", "4"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"text", "token_ids", "source_kept", "stats"} and len(out["token_ids"]) <= 4
    assert main(["info", str(text_package), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["family"] == "t5" and info["quant"] == "int8" and info["tokenizer"] is True
    assert info["providers"]["decoder"] == ["CPUExecutionProvider"]
    from edgeseq.runtime.integer_gemm import integer_gemm_saturates, x86_cpu_flags
    assert info["encoder_int8_weights"] == \
        ("unsigned" if integer_gemm_saturates(x86_cpu_flags()) else "stored")
    assert info["row_invariant_decoder"] is True  # an int8 export
    assert main(["info", "default"]) == 0
    shown = capsys.readouterr().out
    assert "decoding defaults: no_repeat_ngram_size 3, rerank_source True, copy_bias 1.0, " \
        "draft input" in shown
    assert "greedy speculation: plain greedy's tokens, bitwise" in shown


def test_info_says_where_this_cpus_lone_rows_leave_near_ties(text_package, capsys, monkeypatch):
    """A package that recommends no drafter keeps its passes as they come; on a CPU whose
    products pair rows (here: told so) info says so and how to make speculation exact."""
    import edgeseq.runtime.nbits_rows as nbits_rows
    monkeypatch.setattr(nbits_rows, "row_grouping", lambda kind, threads=1: nbits_rows.PAIRS)
    assert main(["info", str(text_package)]) == 0
    assert "greedy speculation: plain greedy's tokens but at rare near-ties (this CPU's " \
        "products compute a lone row differently: load with even_decoder_rows=True, CLI " \
        "--even-rows on)" in capsys.readouterr().out
    assert main(["info", str(text_package), "--even-rows", "on"]) == 0  # asked: even rows
    assert "(every pass runs an even number of rows" in capsys.readouterr().out


def test_info_says_even_rows_make_an_int4_package_exact(tiny_package, capsys):
    """An int4 decoder's attention is not padded: info points to even rows, which make it
    exact, and says so once they run."""
    from edgeseq.runtime.nbits_rows import DecoderRows
    from edgeseq import names
    package = tiny_package("t5", "int4")[0]
    helps = DecoderRows((package / names.DECODER_FILE).read_bytes()).even_rows_make_exact(False)
    assert main(["info", str(package)]) == 0
    shown = capsys.readouterr().out
    assert "greedy speculation: plain greedy's tokens but at rare near-ties (int4 one-token " \
        "passes round differently" in shown
    assert ("load with even_decoder_rows=True, CLI --even-rows on" in shown) == helps
    assert main(["info", str(package), "--even-rows", "on"]) == 0
    shown = capsys.readouterr().out
    assert ("(every pass runs an even number of rows: no attention query is a lone row)"
            in shown) == helps


def test_cli_drafts_as_the_package_recommends_unless_told_otherwise(text_package, capsys):
    args = ["generate", "default", "She go to school every days.", "--json"]
    assert main(args) == 0  # --draft auto: the default model recommends input drafting
    auto = json.loads(capsys.readouterr().out)
    assert auto["stats"]["speculation"]["verify_passes"] >= 1
    assert main(args + ["--draft", "none"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["stats"]["speculation"] is None and plain["token_ids"] == auto["token_ids"]
    assert main(args + ["--num-beams", "2"]) == 0  # auto drafts for greedy search only
    assert json.loads(capsys.readouterr().out)["stats"]["speculation"] is None
    assert main(["generate", str(text_package), "hello", "--json"]) == 0  # recommends none
    assert json.loads(capsys.readouterr().out)["stats"]["speculation"] is None


def test_cli_layer_drafting_with_a_skip_set_equals_plain(text_package, capsys):
    args = ["generate", str(text_package), "hello world", "--json", "--max-new-tokens", "6"]
    assert main(args) == 0
    plain = json.loads(capsys.readouterr().out)["token_ids"]
    assert main(args + ["--draft", "layers", "--draft-skip", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["token_ids"] == plain
    with pytest.raises(SystemExit) as bad:  # argparse's usage error
        main(args + ["--draft", "layers", "--draft-skip", "one"])
    assert bad.value.code == 2 and "layer indices" in capsys.readouterr().err


def test_cli_sampling_options_need_sample_and_a_seed_repeats_a_draw(text_package, capsys):
    args = ["generate", str(text_package), "hello", "--max-new-tokens", "6", "--json"]
    assert main(args + ["--top-p", "0.9", "--seed", "1"]) == 2  # not silently greedy
    assert "top_p, seed only apply when sampling" in capsys.readouterr().err
    draws = []
    for seed in ("1", "1", "2"):
        assert main(args + ["--sample", "--temperature", "3", "--top-k", "40", "--top-p", "0.95",
                            "--seed", seed]) == 0
        draws.append(json.loads(capsys.readouterr().out)["token_ids"])
    assert draws[0] == draws[1] != draws[2]  # fixed seeds: deterministic, and really sampled


def test_cli_streams_and_reports_errors_without_tracebacks(text_package, capsys, tmp_path):
    args = ["generate", str(text_package), "hello", "--max-new-tokens", "3"]
    assert main(args + ["--json"]) == 0
    whole = json.loads(capsys.readouterr().out)["text"]
    assert main(args) == 0  # streamed piece by piece: the same text, one line
    assert capsys.readouterr().out == whole + "\n"
    assert main(["generate", str(tmp_path), "hello"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgeseq: error:") and "Traceback" not in err
    assert main(["generate", str(text_package), "hello", "--provider", "tpu"]) == 2
    assert "unknown provider" in capsys.readouterr().err


def test_cli_reads_one_input_per_line_of_stdin_and_writes_one_line_each(text_package, capsys,
                                                                         monkeypatch):
    import io
    args = ["generate", str(text_package), "--max-new-tokens", "4"]
    singles = []
    for text in ("hello world", "a second line"):
        assert main(args[:2] + [text] + args[2:] + ["--json"]) == 0
        singles.append(json.loads(capsys.readouterr().out)["token_ids"])

    def stdin(data: bytes):
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))

    stdin(b"hello world\n\r\na second line\n")
    assert main(args[:2] + ["-"] + args[2:] + ["--json", "--draft", "input"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[1] == "null"  # an empty input line keeps its place
    assert [json.loads(lines[0])["token_ids"], json.loads(lines[2])["token_ids"]] == singles

    stdin(b"hello world\n" + b"word " * 600 + b"\n")
    assert main(args[:2] + ["-"] + args[2:]) == 2
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 1  # the first line's output came before the error
    assert captured.err.startswith("edgeseq: error: line 2:") and "at most" in captured.err
    assert "--truncate-input" in captured.err  # the error names the CLI's way out
    stdin(b"word " * 600 + b"\n")
    assert main(args[:2] + ["-"] + args[2:] + ["--truncate-input", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["token_ids"]

    stdin(b"hello world\n\xff\xfe not text\n")
    assert main(args[:2] + ["-"] + args[2:]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgeseq: error: line 2 is not UTF-8 text") and "Traceback" not in err


def _cli_generate(package: str, flags: list[str], capsys) -> dict:
    args = ["generate", package, "5 9 13 22 40 7 2", "--ids", "--json", "--max-new-tokens", "8"]
    assert main(args + flags) == 0
    return json.loads(capsys.readouterr().out)


# each generation flag of the CLI against the Python option it stands for
FLAG_CASES = {
    "min-new-tokens": (["--min-new-tokens", "8"], dict(min_new_tokens=8)),
    "no-repeat-ngram-size": (["--no-repeat-ngram-size", "1"], dict(no_repeat_ngram_size=1)),
    "skip-ratio": (["--skip-ratio", "3"], dict(skip_ratio=3.0)),
    "exit-after": (["--exit-after", "1"], dict(exit_after=1)),
    "exit-threshold": (["--exit-threshold", "0.3", "--exit-measure", "margin"],
                       dict(exit_threshold=0.3, exit_measure="margin")),
    "num-beams": (["--num-beams", "3"], dict(num_beams=3)),
}


@pytest.mark.parametrize("name", FLAG_CASES)
def test_each_cli_generation_flag_decodes_as_its_python_option(name, tiny_package, capsys):
    package = str(tiny_package("bart", "int8")[0])  # ends this input at once: EOS shows
    flags, options = FLAG_CASES[name]
    engine = edgeseq.load(package, threads=1)
    expected = engine.generate([5, 9, 13, 22, 40, 7, 2], max_new_tokens=8, **options)
    printed = _cli_generate(package, flags + ["--threads", "1", "--no-spin"], capsys)
    assert printed["token_ids"] == expected.token_ids
    assert printed["stats"]["layers_per_pass"] == expected.stats.layers_per_pass
    plain = engine.generate([5, 9, 13, 22, 40, 7, 2], max_new_tokens=8)
    changed = (expected.token_ids != plain.token_ids
               or expected.stats.layers_per_pass != plain.stats.layers_per_pass)
    assert changed or name == "num-beams"  # the option is felt (beams may agree with greedy)


@pytest.mark.parametrize("flags", [["--draft", "ngram"], ["--draft", "input", "--max-draft", "2"],
                                   ["--draft", "layers", "--exit-layer", "1", "--max-draft", "2",
                                    "--draft-confidence", "0.2"],
                                   ["--draft", "layers", "--memory-budget", "400"],
                                   ["--draft", "model:SELF"]])
def test_cli_drafting_flags_draft_and_keep_plain_greedys_tokens(flags, tiny_package, capsys):
    package = str(tiny_package("t5", "int8")[0])
    flags = [f"model:{package}" if f == "model:SELF" else f for f in flags]
    plain = _cli_generate(package, ["--draft", "none"], capsys)
    assert plain["stats"]["speculation"] is None
    fast = _cli_generate(package, flags, capsys)
    assert fast["token_ids"] == plain["token_ids"]
    figures = fast["stats"]["speculation"]
    assert figures is not None and figures["verify_passes"] >= 1
    if "--max-draft" in flags:
        assert max(map(int, figures["accepted_histogram"]), default=0) <= 2
    if "--memory-budget" in flags:
        assert fast["stats"]["memory_plan"] is not None


def test_an_impossible_memory_budget_on_the_cli_names_the_lower_bound(tiny_package, capsys):
    package = str(tiny_package("t5", "int8")[0])
    args = ["generate", package, "5 9 13 2", "--ids", "--draft", "layers", "--memory-budget", "1"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgeseq: error:") and "Traceback" not in err and "MB" in err


def test_the_edgeseq_program_runs_on_the_process_wide_pool_as_called_from_python():
    """Run as a program (its own process) the CLI puts every session on onnxruntime's
    shared pool, a draft model's too; the tokens are those main() gives in-process."""
    import subprocess
    import sys
    text = "She go to school every days."
    args = ["generate", "default", text, "--json", "--max-new-tokens", "12"]
    ran = []
    for extra in ([], ["--draft", "model:default"]):
        proc = subprocess.run([sys.executable, "-m", "edgeseq", *args, *extra], capture_output=True,
                              text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr and "warning" not in proc.stderr  # one pool
        ran.append(json.loads(proc.stdout))
    in_process = edgeseq.load("default", threads=1).generate(text, max_new_tokens=12)
    assert ran[0]["token_ids"] == ran[1]["token_ids"] == in_process.token_ids
    assert ran[1]["stats"]["speculation"]["verify_passes"] >= 1


def test_the_export_command_quantizes_validates_and_takes_a_tokenizer(tiny_checkpoint, tmp_path,
                                                                       capsys, t5_tokenizer_file):
    from tiny_models import build_t5_text_checkpoint
    for quant in ("fp16", "int4"):
        out = tmp_path / quant
        assert main(["export", str(tiny_checkpoint("bart")), str(out), "--quant", quant]) == 0
        printed = capsys.readouterr().out
        assert f"wrote {out} ({quant})" in printed and "greedy" in printed  # its validation
        assert edgeseq.load(str(out), threads=1).manifest.quant == quant
    checkpoint = build_t5_text_checkpoint(tmp_path / "t5-32k")
    out = tmp_path / "with-tokenizer"
    assert main(["export", str(checkpoint), str(out), "--no-validate",
                 "--tokenizer", str(t5_tokenizer_file)]) == 0
    assert edgeseq.load(str(out), threads=1).generate("hello", max_new_tokens=2).text is not None
    assert main(["export", str(tmp_path / "nowhere"), str(tmp_path / "x")]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_exporting_with_a_tokenizer_larger_than_the_model_warns(tiny_checkpoint, tmp_path):
    from edgeseq.export import export_checkpoint
    tokenizer = edgeseq.load("default").directory / "tokenizer.json"  # 4,000 tokens, model 96
    with pytest.warns(RuntimeWarning, match="has 4000 tokens but the model only 96"):
        export_checkpoint(tiny_checkpoint("t5"), tmp_path / "pkg", validate=False,
                          tokenizer=tokenizer)


def test_edgeseq_turns_onnxruntimes_telemetry_off_unless_the_user_set_it():
    """onnxruntime 1.29+ records and uploads telemetry on Linux and macOS unless
    ORT_DISABLE_TELEMETRY=1 is set before it starts; importing edgeseq sets it, and a
    value the user chose stays."""
    import os
    import subprocess
    import sys
    code = "import os, edgeseq; print(os.environ['ORT_DISABLE_TELEMETRY'])"
    for preset, expected in ((None, "1"), ("0", "0")):
        env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
        if preset is not None:
            env["ORT_DISABLE_TELEMETRY"] = preset
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=60)
        assert out.stdout.strip() == expected, out.stderr


def test_info_with_a_provider_this_onnxruntime_lacks_falls_back_and_says_so(tiny_package,
                                                                            capsys):
    import onnxruntime as ort
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: tests/test_cuda_provider.py covers it")
    package = str(tiny_package("t5", "int8")[0])
    with pytest.warns(RuntimeWarning, match="provider 'cuda' .* running on CPU"):
        assert main(["info", package, "--provider", "cuda", "--json"]) == 0
    providers = json.loads(capsys.readouterr().out)["providers"]
    assert providers == {"encoder": ["CPUExecutionProvider"], "decoder": ["CPUExecutionProvider"]}
