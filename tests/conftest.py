"""Shared fixtures: tiny checkpoints and their exported packages, built once per session."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_models import build_t5_text_checkpoint, build_tiny  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = build_tiny(family, tmp_path_factory.mktemp(f"ck-{family}"))
        return built[family]
    return get


@pytest.fixture(scope="session")
def tiny_package(tiny_checkpoint, tmp_path_factory):
    """(family, quant) -> (package dir, export report)."""
    from edgeseq.export import export_checkpoint
    made: dict[tuple[str, str], tuple] = {}

    def get(family: str, quant: str = "fp32"):
        if (family, quant) not in made:
            out = tmp_path_factory.mktemp(f"pkg-{family}-{quant}") / "pkg"
            made[family, quant] = (out, export_checkpoint(tiny_checkpoint(family), out, quant=quant))
        return made[family, quant]
    return get


@pytest.fixture(scope="session")
def t5_tokenizer_file():
    path = SHARED / "tokenizers" / "t5" / "tokenizer.json"
    if not path.is_file():
        pytest.skip(f"the real T5 tokenizer is not at {path} (../shared is absent)")
    return path


@pytest.fixture(scope="session")
def t5_text_package(t5_tokenizer_file, tmp_path_factory):
    """A tiny random T5 with the real T5 tokenizer, exported int8 (its outputs are noise)."""
    from edgeseq.export import export_checkpoint
    root = tmp_path_factory.mktemp("t5text")
    export_checkpoint(build_t5_text_checkpoint(root / "ck"), root / "pkg", quant="int8",
                      tokenizer=t5_tokenizer_file)
    return root / "pkg"
