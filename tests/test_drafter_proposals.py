"""What the drafters propose, by their rules, without running a model (one test reads the
default package's tokenizer): input drafting's situations, anchors and stops before edits,
n-gram continuations, and the token shapes input drafting re-anchors by."""
from __future__ import annotations

import edgeseq


def test_the_input_drafter_names_where_its_draft_comes_from():
    from edgeseq.runtime.drafters import (ALIGNED, GOING_ON, NGRAM, START, DraftContext,
                                          InputDrafter)
    source = [10, 11, 12, 13, 14, 15, 16, 1]
    drafter = InputDrafter(max_draft=64)

    def situation(out: list[int]) -> int | None:
        named = drafter.situation([source], [[0] + out])
        drafter.propose(DraftContext([source], [[0] + out], 64))
        return named

    assert situation([]) == START
    drafter.update(8, 2)  # 10, 11 accepted, 12 rejected: the model wrote 98 instead
    assert situation([10, 11, 98]) == ALIGNED
    drafter.update(5, 1)  # 13 accepted, 14 rejected: the model wrote 14 after all
    assert situation([10, 11, 98, 13, 14]) == NGRAM + 2  # "13 14" anchors, "98 13 14" not
    drafter.update(2, 2)  # both accepted: the next draft goes on from there
    assert situation([10, 11, 98, 13, 14, 15, 16]) == GOING_ON
    drafter.update(1, 1)
    assert situation([10, 11, 98, 13, 14, 15, 16, 1]) is None  # the source is used up
    assert drafter.situation([source, source], [[0], [0]]) is None  # a batch names none


def test_input_drafts_stop_before_an_edit_a_rejected_tail_showed():
    """A verify pass that rejects a draft token still shows the model's choices after it;
    where they differ from the source, the model will likely edit, so a later draft ends
    just before that position, or, beginning there, is the model's shown choice alone."""
    from edgeseq.runtime.drafters import DraftContext, InputDrafter
    source = [10, 11, 12, 13, 14, 15, 16, 1]

    def first_pass(choices_after_miss: list[int]) -> InputDrafter:
        drafter = InputDrafter(max_draft=64)
        drafter.situation([source], [[0]])
        assert drafter.propose(DraftContext([source], [[0]], 64)).tokens[0].tolist() == source
        assert drafter.wants_tail
        drafter.tail(2, choices_after_miss)  # the model wrote 20 for 11 (draft position 1)
        drafter.update(len(source), 1)
        assert not drafter.wants_tail
        return drafter

    def next_draft(drafter: InputDrafter, out: list[int]) -> list[int]:
        drafter.situation([source], [[0] + out])  # 20 is not in the source: re-anchored at 12
        return drafter.propose(DraftContext([source], [[0] + out], 64)).tokens[0].tolist()

    edit_later = first_pass([12, 13, 99, 15, 16, 1])  # and 99 where the source has 14
    assert next_draft(edit_later, [10, 20]) == [12, 13]
    edit_next = first_pass([77, 13, 14, 15, 16, 1])  # and 77 where the source has 12
    assert next_draft(edit_next, [10, 20]) == [77]
    no_edit = first_pass([12, 13, 14, 15, 16, 1])
    assert next_draft(no_edit, [10, 20]) == [12, 13, 14, 15, 16, 1]


def test_ngram_drafts_continue_what_earlier_outputs_said_after_the_same_tokens():
    from edgeseq.runtime.drafters import DraftContext, NgramDrafter
    drafter = NgramDrafter(max_draft=4, ngram=2)

    def proposed(out: list[int]) -> list[int]:
        return drafter.propose(DraftContext([[]], [[0] + out], 8)).tokens[0].tolist()

    drafter.learn([5, 6, 7, 8, 9, 1])
    assert proposed([3, 6, 7]) == [8, 9, 1]  # "6 7" was followed by "8 9 1"
    assert proposed([4]) == []               # never seen
    drafter.learn([6, 7, 2, 1])              # learnt after a draft: the latest one wins
    assert proposed([6, 7]) == [2, 1]
    for i in range(NgramDrafter.PENDING_LIMIT + 3):  # many calls that never draft
        drafter.learn([100 + i, 200 + i])
    assert proposed([100]) == [200]


def _input_drafts(source: list[int], outputs: list[list[int]], shapes=None) -> list[list[int]]:
    """What the input drafter proposes after each successive output (start token first)."""
    from edgeseq.runtime.drafters import DraftContext, InputDrafter
    drafter = InputDrafter(max_draft=64, shapes=shapes)
    proposals = []
    for out in outputs:
        tokens = drafter.propose(DraftContext([source], [[0] + out], 64)).tokens[0]
        proposals.append([int(t) for t in tokens if t >= 0])
    return proposals


def test_input_drafts_continue_the_source_after_a_copied_word():
    source = [10, 11, 12, 13, 14, 1]
    assert _input_drafts(source, [[], [10, 11]]) == [source, [12, 13, 14, 1]]


def test_input_drafts_skip_a_substituted_word_and_re_anchor_after_an_insertion():
    source = [10, 11, 12, 13, 14, 1]
    # 11 -> 99 (substitution): the source goes on after the replaced word
    assert _input_drafts(source, [[], [10], [10, 99]])[-1] == [12, 13, 14, 1]
    # an inserted word, then a copied one: found again by matching
    assert _input_drafts(source, [[], [10], [10, 98, 11]])[-1] == [12, 13, 14, 1]


# a SentencePiece-style vocabulary: "\u2581" marks a word's first piece
_PIECES = {"</s>": 1, "\u2581bec": 10, "a": 11, "ese": 12, "\u2581when": 13, "\u2581we": 14,
           "\u2581Because": 20, "\u2581When": 21}


def _shapes():
    from edgeseq.runtime.token_shapes import TokenShapes
    return TokenShapes.from_vocab(_PIECES, special={1})


def test_token_shapes_know_word_starts_and_capitalised_twins():
    shapes = _shapes()
    assert [shapes.starts_word(t) for t in (1, 10, 11, 12, 13)] == [True, True, False, False, True]
    assert shapes.capitalised == {13: 21}  # "\u2581bec" has no "\u2581Bec"


def test_token_shapes_read_byte_level_marks_and_give_up_without_marks():
    from edgeseq.runtime.token_shapes import TokenShapes
    byte_level = TokenShapes.from_vocab({"\u0120the": 0, "\u0120The": 1, "s": 2}, special=set())
    assert byte_level.capitalised == {0: 1} and not byte_level.starts_word(2)
    assert TokenShapes.from_vocab({"the": 0, "##s": 1}, special=set()) is None


def test_token_shapes_of_the_default_packages_tokenizer():
    codec = edgeseq.load("default").codec
    ids = {word: codec._tok.token_to_id(word) for word in ("\u2581because", "\u2581Because", "\u2581the")}
    shapes = codec.shapes
    assert shapes.capitalised[ids["\u2581because"]] == ids["\u2581Because"]
    assert shapes.starts_word(ids["\u2581the"]) and shapes.starts_word(codec._tok.token_to_id("</s>"))


def test_input_drafts_with_token_shapes_capitalise_the_first_word():
    source = [13, 14, 1]
    assert _input_drafts(source, [[]], _shapes()) == [[21, 14, 1]]
    assert _input_drafts(source, [[]]) == [source]  # without shapes: the literal source


def test_input_drafts_with_token_shapes_resume_at_the_next_word_after_a_rewritten_one():
    source = [10, 11, 12, 13, 14, 1]  # "bec a ese when we"
    # "Because" replaced the three pieces of "becaese": go on at "when", not inside the word
    assert _input_drafts(source, [[], [20]], _shapes())[-1] == [13, 14, 1]
    assert _input_drafts(source, [[], [20]])[-1] == [11, 12, 13, 14, 1]
