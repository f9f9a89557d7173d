"""`edgeseq bench`: which command each suite runs, with a device profile's threads and
memory budget passed on (the suites themselves are benchmarks, not run here)."""
from __future__ import annotations

import argparse
from pathlib import Path

from bench import suite


def _args(**kw) -> argparse.Namespace:
    base = dict(out=Path("/tmp/results"), threads=4, package="default", quick=False, memory_budget=1500.0)
    return argparse.Namespace(**{**base, **kw})


def test_every_suite_runs_its_benchmark_module_with_the_threads_and_output_folder():
    cmds = suite.commands(_args())
    assert set(suite.SUITES) <= set(cmds)
    for name, runs in cmds.items():
        first = runs[0]
        assert first[1:3] == ["-m", f"bench.{name}"]
        assert str(Path("/tmp/results") / name) in first
        if name != "scaling":
            assert first[first.index("--threads") + 1] == "4"


def test_a_memory_budget_reaches_the_speculative_suite():
    spec = suite.commands(_args())["speculative"][0]
    assert spec[spec.index("--memory-budget") + 1] == "1500.0"
    assert "--memory-budget" not in suite.commands(_args(memory_budget=None))["speculative"][0]
    specmemo = [c for c in suite.commands(_args())["speculative"] if "bench.specmemo" in c][0]
    assert specmemo[specmemo.index("--budget") + 1] == "1500.0"
    assert not any("bench.specmemo" in c for c in suite.commands(_args(memory_budget=None))["speculative"])


def test_the_t5_small_drafters_run_with_a_draft_model_once_decode_has_exported_the_package(
        tmp_path, monkeypatch):
    monkeypatch.setattr(suite, "T5_SMALL", tmp_path)
    assert not any("speculative-t5-small" in " ".join(c) for c in suite.commands(_args())["speculative"])
    (tmp_path / "edgeseq-int8").mkdir()
    runs = suite.commands(_args())["speculative"]
    made = [c for c in runs if "bench.draft_models" in c][0]
    t5 = [c for c in runs if str(Path("/tmp/results") / "speculative-t5-small") in c][0]
    assert runs.index(made) < runs.index(t5)  # the draft package exists before it is used
    assert f"model:{made[made.index(str(tmp_path / 'hf')) + 1]}" in t5[t5.index("--drafters") + 1]
    even = [c for c in runs if "bench.even_rows" in c]  # what exact drafts cost on this CPU
    assert len(even) == 1 and str(tmp_path / "edgeseq-int8") in even[0]


def test_an_int8_package_gets_its_decoder_measured_in_int8_and_in_fp32(tiny_package):
    """Whether fp32 decoder products pay is a property of the device: the suite measures it."""
    runs = suite.commands(_args())["speculative"]  # the default package: int8
    compute = [c for c in runs if "bench.decoder_compute" in c]
    assert len(compute) == 1 and str(Path("/tmp/results") / "decoder-compute") in compute[0]
    fp32 = suite.commands(_args(package=str(tiny_package("t5", "fp32")[0])))["speculative"]
    assert not any("bench.decoder_compute" in c for c in fp32)


def test_a_profile_sets_threads_budget_and_folder_and_a_failing_suite_is_reported(
        tmp_path, monkeypatch, capsys):
    """`edgeseq bench --suite S --profile P`: the suite's commands (recorded, not run) get
    the profile's threads and memory budget and write under OUT/P; exit 1 names a failure."""
    import subprocess
    ran = []

    def record(cmd, cwd):
        ran.append(cmd)
        return subprocess.CompletedProcess(cmd, 1 if "bench.specmemo" in cmd else 0)
    monkeypatch.setattr(suite.subprocess, "run", record)
    assert suite.main(["--suite", "speculative", "--profile", "pi4", "--out", str(tmp_path)]) == 1
    assert "suites that failed: speculative" in capsys.readouterr().out
    first = ran[0]
    assert first[first.index("--threads") + 1] == "4"
    assert float(first[first.index("--memory-budget") + 1]) == 1500
    assert str(tmp_path / "pi4" / "speculative") in first
    assert (tmp_path / "pi4").is_dir()
    ran.clear()
    assert suite.main(["--suite", "skip", "--threads", "3", "--out", str(tmp_path)]) == 0
    assert all(c[c.index("--threads") + 1] == "3" for c in ran)


def test_relative_out_and_package_paths_are_the_callers(tmp_path, monkeypatch):
    """The suites run from the repository root; a relative --out or --package names a
    folder in the caller's working directory, not in the repository."""
    import subprocess
    ran = []
    monkeypatch.setattr(suite.subprocess, "run",
                        lambda cmd, cwd: ran.append(cmd) or subprocess.CompletedProcess(cmd, 0))
    (tmp_path / "mypkg").mkdir()
    monkeypatch.chdir(tmp_path)
    assert suite.main(["--suite", "skip", "--out", "results", "--package", "mypkg"]) == 0
    assert (tmp_path / "results").is_dir()
    assert str(tmp_path / "results" / "skip") in ran[0] and str(tmp_path / "mypkg") in ran[0]


def test_the_speculative_suite_runs_the_readme_tables_command():
    """The README's table: every drafter and the noise control, each input decoded by every
    configuration in turn (the paired speedup), five repeats (one with --quick)."""
    import re
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    documented = re.search(r"python -m bench\.speculative default (.*?)--out", readme, re.S).group(1).split()
    run = suite.commands(_args())["speculative"][0]
    for flag in ("--drafters", "--interleave", "--repeats"):
        assert run[run.index(flag) + 1] == documented[documented.index(flag) + 1]
    quick = suite.commands(_args(quick=True))["speculative"][0]
    assert quick[quick.index("--repeats") + 1] == "1"
