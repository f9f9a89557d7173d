"""The decode benchmark harness, smoke-tested on a tiny random T5 with the transformers peer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # bench/ is a folder of the repository, not an installed package
    sys.path.insert(0, str(ROOT))

from bench import report  # noqa: E402
from bench.peers import EngineResult, Stat  # noqa: E402


def _ok(engine: str, tokens_per_s: float, first_ms: float, tokens: list[int]) -> EngineResult:
    return EngineResult(
        engine=engine, label=engine, shape="tiny", status="ok", new_tokens=len(tokens),
        first_token_ms=Stat(first_ms, first_ms, first_ms),
        decode_tokens_per_s=Stat(tokens_per_s, tokens_per_s, tokens_per_s),
        peak_rss_mb=100.0, size_mb=10.0, token_ids=tokens,
    )


def test_ratios_and_reference_match_need_no_engines() -> None:
    results = [
        _ok("transformers", 50.0, 60.0, [5, 6, 7, 8]),
        _ok("ct2-int8", 100.0, 20.0, [5, 6, 9, 8]),
        _ok("edgeseq-int8", 200.0, 10.0, [5, 6, 7, 8]),
        EngineResult(engine="ort-int8", label="ort-int8", shape="tiny", status="missing"),
    ]
    report.mark_reference_match(results)
    assert [r.same_prefix for r in results] == [4, 2, 4, None]
    rows = {row["peer"]: row for row in report.ratios(results)}
    assert set(rows) == {"transformers", "ct2-int8"}  # missing peers give no ratio
    assert rows["ct2-int8"]["decode_tokens_per_s"] == pytest.approx(2.0)
    assert rows["ct2-int8"]["first_token_speedup"] == pytest.approx(2.0)


class _ScriptedEngine:
    """A peer whose calls 'take' scripted milliseconds (bench.decode._timed_ms patched)."""
    def imports(self) -> None: ...
    def load(self, threads: int) -> None: ...
    def generate(self, ids: list[int], n: int) -> list[int]:
        return list(range(n))


def _measure_scripted(monkeypatch, times_ms: list[float]) -> EngineResult:
    from argparse import Namespace

    from bench import decode
    script = iter(times_ms)
    monkeypatch.setattr(decode, "_timed_ms", lambda engine, ids, n: (next(script), list(range(n))))
    result = EngineResult(engine="fake", label="fake", shape="tiny", status="ok", new_tokens=8)
    return decode._measure(_ScriptedEngine(), result, [1, 2],
                           Namespace(new_tokens=8, warmup=0, repeats=2, threads=1))


def test_a_round_whose_n_tokens_were_no_slower_than_one_is_redone(monkeypatch) -> None:
    # round 1: 1 token 30 ms (another process took it), 8 tokens 10 ms: redone as 2 / 9 ms
    r = _measure_scripted(monkeypatch, [30.0, 10.0, 2.0, 9.0, 2.0, 16.0])
    assert r.status == "ok" and r.extra["rounds_redone"] == 1
    assert r.first_token_ms.median == 2.0 and r.full_ms.median == 12.5
    assert r.decode_tokens_per_s.median == pytest.approx(7 / 0.0105)
    assert (r.decode_tokens_per_s.min, r.decode_tokens_per_s.max) == pytest.approx((500.0, 1000.0))


def test_a_run_too_noisy_to_time_decoding_fails_with_a_reason_not_nan(monkeypatch) -> None:
    r = _measure_scripted(monkeypatch, [5.0, 5.0] * 8)
    assert r.status == "failed" and "too noisy to time decoding" in r.reason
    assert r.decode_tokens_per_s is None and r.extra["rounds_redone"] == 6


def test_quick_run_on_tiny_shape(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    # A package that shadows ctranslate2 and fails to import: the peer must read "missing".
    hidden = tmp_path / "hidden" / "ctranslate2"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text('raise ImportError("hidden by the test")\n')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(hidden.parent), os.environ.get("PYTHONPATH")) if p))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "bench.decode", "--quick", "--shape", "tiny",
           "--engines", "transformers,ct2-int8", "--cache-dir", str(tmp_path / "cache"),
           "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| transformers fp32 | ok |" in proc.stdout

    data = json.loads((out / "results.json").read_text())
    machine_keys = {"cpu_model", "usable_cores", "memory_gib", "onnxruntime", "threads"}
    assert machine_keys <= set(data["machine"])
    assert data["settings"]["new_tokens"] == 8 and data["settings"]["repeats"] == 1
    by_engine = {r["engine"]: r for r in data["results"]}

    hf = by_engine["transformers"]
    assert hf["status"] == "ok", hf["reason"]
    assert hf["shape"] == "tiny" and len(hf["token_ids"]) == 8 and hf["same_prefix"] == 8
    for key in ("first_token_ms", "full_ms", "decode_tokens_per_s"):
        assert set(hf[key]) == {"median", "min", "max"}
        assert hf[key]["min"] <= hf[key]["median"] <= hf[key]["max"]
    assert hf["decode_tokens_per_s"]["median"] > 0
    for key in ("load_s", "import_s", "peak_rss_mb", "size_mb"):
        assert hf[key] > 0, key

    ct2 = by_engine["ct2-int8"]
    assert ct2["status"] == "missing" and "hidden by the test" in ct2["reason"]
    assert (out / "table.md").read_text().startswith("## Decode benchmark")


def test_merge_keeps_the_least_disturbed_ok_run(tmp_path: Path) -> None:
    from dataclasses import asdict

    from bench.decode import merge

    quiet = _ok("ct2-int8", 100.0, 20.0, [1])
    quiet.others_cpu_cores = 0.1
    noisy = _ok("ct2-int8", 50.0, 40.0, [1])
    noisy.others_cpu_cores = 1.2
    failed = EngineResult(engine="transformers", label="transformers", shape="tiny",
                          status="failed")
    old = tmp_path / "results.json"
    older = [asdict(quiet), asdict(_ok("transformers", 9.0, 9.0, [1]))]
    old.write_text(json.dumps({"results": older}))
    merged = {r.engine: r for r in merge([noisy, failed], [old])}
    assert merged["ct2-int8"].decode_tokens_per_s.median == 100.0
    assert merged["transformers"].status == "ok"
    assert list(merged) == ["transformers", "ct2-int8"]  # the engines' usual order
