"""bench.machine names the code a result came from: the commit, marked when Python files
differed from it."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from bench.machine import _git_commit


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_run_of_uncommitted_code_is_marked(tmp_path):
    git = lambda *args: subprocess.run(["git", *args], cwd=tmp_path, check=True,
                                       capture_output=True)
    git("init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git("add", "a.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    commit = _git_commit(tmp_path)
    assert commit and "+" not in commit
    (tmp_path / "notes.md").write_text("results")  # not code
    assert _git_commit(tmp_path) == commit
    (tmp_path / "a.py").write_text("x = 2\n")
    assert _git_commit(tmp_path) == commit + "+changes"
