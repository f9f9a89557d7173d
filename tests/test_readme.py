"""The result tables of the README and docs/results.md are the ones bench/readme.py
generates from the committed benchmark JSON: no figure in them is typed by hand."""
from __future__ import annotations

from pathlib import Path

from bench import readme

ROOT = Path(__file__).resolve().parents[1]


def test_every_results_table_is_generated_from_the_committed_json():
    sections = readme.render(ROOT / "docs" / "results")
    assert set(sections) == set(readme.SOURCES)
    results_page = (ROOT / "docs" / "results.md").read_text()
    for name in sections:  # the results page has them all; the README the headline ones
        assert f"<!-- bench:{name} -->" in results_page and f"<!-- /bench:{name} -->" in results_page
    for page in readme.PAGES:
        text = page.read_text()
        assert readme.update(text, sections) == text, \
            f"run `python -m bench.readme` after a benchmark ({page.name} is out of date)"


def test_a_table_follows_its_json():
    sections = {"decode": "| new table |"}
    before = "intro\n<!-- bench:decode -->\nold figures\n<!-- /bench:decode -->\noutro\n"
    assert readme.update(before, sections) == \
        "intro\n<!-- bench:decode -->\n| new table |\n<!-- /bench:decode -->\noutro\n"
