"""The README's result tables are the ones bench/readme.py generates from the committed
benchmark JSON: no figure in them is typed by hand."""
from __future__ import annotations

from pathlib import Path

from bench import readme

ROOT = Path(__file__).resolve().parents[1]


def test_every_results_table_in_the_readme_is_generated_from_the_committed_json():
    text = (ROOT / "README.md").read_text()
    sections = readme.render(ROOT / "docs" / "results")
    assert set(sections) == set(readme.SOURCES)
    for name in sections:
        assert f"<!-- bench:{name} -->" in text and f"<!-- /bench:{name} -->" in text
    assert readme.update(text, sections) == text, "run `python -m bench.readme` after a benchmark"


def test_a_table_follows_its_json():
    sections = {"decode": "| new table |"}
    before = "intro\n<!-- bench:decode -->\nold figures\n<!-- /bench:decode -->\noutro\n"
    assert readme.update(before, sections) == \
        "intro\n<!-- bench:decode -->\n| new table |\n<!-- /bench:decode -->\noutro\n"
