"""How an engine's sessions use threads: the encoder's idle workers sleep (so they do not
spin against the decoder steps that follow), and the opt-in process-wide pool gives the
same tokens. The shared pool is process-wide, so its tests run in child processes."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import edgeseq
from edgeseq.errors import OptionsError
from edgeseq.runtime.providers import NARROW_MODEL, SessionConfig, encoder_thread_count

SPIN = "session.intra_op.allow_spinning"
REPO = Path(__file__).resolve().parents[1]


def test_the_encoder_session_sleeps_when_idle_and_the_decoder_spins(tiny_package):
    package, _ = tiny_package("t5", "int8")
    engine = edgeseq.load(str(package), threads=2)
    encoder = engine.runner.encoder.get_session_options()
    decoder = engine.runner.decoder.get_session_options()
    assert encoder.get_session_config_entry(SPIN) == "0"
    with pytest.raises(RuntimeError, match="does not have configuration"):
        decoder.get_session_config_entry(SPIN)  # unset: onnxruntime's default, spinning
    quiet = edgeseq.load(str(package), threads=2, spin=False)  # both sleep
    for session in (quiet.runner.encoder, quiet.runner.decoder):
        assert session.get_session_options().get_session_config_entry(SPIN) == "0"


def test_the_encoder_can_have_its_own_thread_count_and_gives_the_same_tokens(tiny_package):
    package, _ = tiny_package("t5", "int8")
    default = edgeseq.load(str(package), threads=2)
    narrow = edgeseq.load(str(package), threads=2, encoder_threads=1)
    assert narrow.runner.encoder.get_session_options().intra_op_num_threads == 1
    assert narrow.runner.decoder.get_session_options().intra_op_num_threads == 2
    ids = [5, 9, 13, 22, 40, 7, 2]
    assert narrow.generate(ids, max_new_tokens=8).token_ids == \
        default.generate(ids, max_new_tokens=8).token_ids


def test_a_narrow_encoder_runs_on_one_thread_unless_told_otherwise(tiny_package):
    package, _ = tiny_package("t5", "int8")  # a tiny width: too small to split
    assert edgeseq.load(str(package), threads=2).runner.encoder \
        .get_session_options().intra_op_num_threads == 1
    assert edgeseq.load(str(package), threads=2, encoder_threads=2).runner.encoder \
        .get_session_options().intra_op_num_threads == 2
    wide, narrow = NARROW_MODEL, NARROW_MODEL // 2
    assert encoder_thread_count(SessionConfig(threads=2), wide) == 2
    assert encoder_thread_count(SessionConfig(threads=0), wide) == 0  # onnxruntime's default
    assert encoder_thread_count(SessionConfig(threads=2), narrow) == 1
    assert encoder_thread_count(SessionConfig(threads=2, encoder_threads=2), narrow) == 2
    assert encoder_thread_count(SessionConfig(threads=2, shared_pool=True), narrow) == 2


def test_bad_encoder_thread_counts_are_named(tiny_package):
    package, _ = tiny_package("t5", "int8")
    with pytest.raises(OptionsError, match="encoder_threads must be"):
        edgeseq.load(str(package), encoder_threads=-1)
    with pytest.raises(OptionsError, match="process-wide pool"):
        edgeseq.load(str(package), encoder_threads=1, shared_pool=True)


def _in_child(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                         cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_engines_on_the_shared_pool_give_the_same_tokens_and_later_engines_join_it(tiny_package):
    package, _ = tiny_package("bart", "int8")
    result = _in_child(f"""
        import json, warnings
        import edgeseq
        ids = [5, 9, 14, 3, 2]
        own = edgeseq.load({str(package)!r}, threads=2).generate(ids, max_new_tokens=8).token_ids
        shared = edgeseq.load({str(package)!r}, threads=2, shared_pool=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            later = edgeseq.load({str(package)!r}, threads=1)  # the pool exists: it joins, and says so
        print(json.dumps({{"own": own, "shared": shared.generate(ids, max_new_tokens=8).token_ids,
                          "later": later.generate(ids, max_new_tokens=8).token_ids,
                          "warned": any("shared thread pool" in str(w.message) for w in caught)}}))
    """)
    assert result["shared"] == result["own"] == result["later"]
    assert result["warned"]
