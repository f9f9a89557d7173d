"""bench.replay_input_drafts: the edit floor a source-copying drafter cannot go below."""
from __future__ import annotations

from bench.replay_input_drafts import edit_floor

EOS = 1


def test_an_unchanged_output_needs_one_pass():
    assert edit_floor([[5, 6, 7, EOS]], [[5, 6, 7, EOS]], EOS) == \
        {"passes_per_sentence": 1.0, "edits_per_sentence": 0.0}


def test_each_written_token_costs_a_pass_and_a_deletion_costs_one():
    replaced = ([5, 6, 7, 8, EOS], [5, 9, 10, 7, 8, EOS])  # 6 -> 9 10: two written tokens
    deleted = ([5, 6, 7, 8, EOS], [5, 7, 8, EOS])          # 6 dropped
    inserted = ([5, 6, EOS], [5, 4, 6, EOS])               # 4 added
    floor = edit_floor(*zip(replaced, deleted, inserted), EOS)
    assert floor == {"passes_per_sentence": (3 + 2 + 2) / 3, "edits_per_sentence": 1.0}
