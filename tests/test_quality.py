"""Specifications for edgeseq.quality: JFLEG GLEU and WER."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from edgeseq.quality import (
    gleu,
    gleu_sampled,
    jfleg_detokenize,
    jfleg_tokenize,
    load_jfleg,
    normalize_for_wer,
    wer,
)

JFLEG_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "jfleg-dev"

SOURCE = "the cat sat on mat"
REFERENCE = "the cat sat on the mat"


# --- GLEU, hand-worked -------------------------------------------------------------


def test_unchanged_source_is_penalised_for_the_uncorrected_bigram() -> None:
    # Unigrams: 5 of 5 hypothesis words are in the reference, none are source-only -> 5/5.
    # Bigrams: "the cat", "cat sat", "sat on" match (3); "on mat" is a source bigram the
    # reference lacks, so it is subtracted -> (3 - 1)/4. Brevity: exp(1 - 6/5).
    expected = math.exp(1 - 6 / 5) * math.sqrt(1.0 * 0.5)
    assert gleu([SOURCE], [SOURCE], [[REFERENCE]], n=2) == pytest.approx(expected)


def test_hypothesis_equal_to_the_reference_scores_one() -> None:
    assert gleu([SOURCE], [REFERENCE], [[REFERENCE]], n=2) == pytest.approx(1.0)
    assert gleu([SOURCE], [REFERENCE], [[REFERENCE]]) == pytest.approx(1.0)


def test_correction_scores_higher_than_copying_the_source() -> None:
    partial = "the cat sat on a mat"  # fixes the missing article, with the wrong one
    copied = gleu([SOURCE], [SOURCE], [[REFERENCE]])
    assert gleu([SOURCE], [partial], [[REFERENCE]]) > copied
    assert gleu([SOURCE], [REFERENCE], [[REFERENCE]]) > gleu([SOURCE], [partial], [[REFERENCE]])


def test_score_is_the_mean_over_reference_sets() -> None:
    other = "a cat was sitting on the mat"
    both = gleu([SOURCE], [REFERENCE], [[REFERENCE], [other]])
    separately = (gleu([SOURCE], [REFERENCE], [[REFERENCE]]) + gleu([SOURCE], [REFERENCE], [[other]])) / 2
    assert both == pytest.approx(separately)
    assert both < 1.0


def test_statistics_are_pooled_over_the_corpus_not_averaged_per_sentence() -> None:
    # Alone, "x y" vs reference "z w" has no matching n-gram and scores 0; pooled with a
    # perfect sentence the corpus still scores above 0.
    assert gleu(["x y"], ["x y"], [["z w"]]) == 0.0
    pooled = gleu([SOURCE, "x y"], [REFERENCE, "x y"], [[REFERENCE, "z w"]])
    assert 0.0 < pooled < 1.0


def test_sampled_variant_equals_deterministic_one_with_a_single_reference_set() -> None:
    refs = [[REFERENCE, "a dog ran"]]
    hyps = [SOURCE, "a dog runs"]
    sources = [SOURCE, "a dog run"]
    assert gleu_sampled(sources, hyps, refs, iterations=7) == pytest.approx(gleu(sources, hyps, refs))


def test_mismatched_lengths_are_rejected() -> None:
    with pytest.raises(ValueError, match="hypotheses"):
        gleu([SOURCE], [], [[REFERENCE]])
    with pytest.raises(ValueError, match="reference set 1"):
        gleu([SOURCE], [SOURCE], [[REFERENCE], []])
    with pytest.raises(ValueError, match="empty"):
        gleu([SOURCE], [SOURCE], [])


# --- GLEU on the real JFLEG dev set ------------------------------------------------


@pytest.fixture(scope="module")
def jfleg():
    if not (JFLEG_DEV / "dev.src").is_file():
        pytest.skip(f"JFLEG dev set not found at {JFLEG_DEV}")
    return load_jfleg(JFLEG_DEV)


def test_jfleg_dev_has_754_sentences_and_four_reference_sets(jfleg) -> None:
    assert len(jfleg.sources) == 754
    assert len(jfleg.references) == 4


def test_no_change_baseline_matches_the_published_dev_score(jfleg) -> None:
    # Napoles et al. (2017) report 38.2 GLEU for the uncorrected JFLEG dev sources;
    # this implementation measures 0.3825 (deterministic) and 0.3820 (sampled).
    assert gleu(jfleg.sources, jfleg.sources, jfleg.references) == pytest.approx(0.382, abs=0.003)
    assert gleu_sampled(jfleg.sources, jfleg.sources, jfleg.references, iterations=50) == pytest.approx(
        0.382, abs=0.005
    )


def test_a_reference_scores_one_against_its_own_set_and_well_above_baseline_overall(jfleg) -> None:
    ref0 = jfleg.references[0]
    assert gleu(jfleg.sources, ref0, [ref0]) == pytest.approx(1.0)
    assert gleu(jfleg.sources, ref0, jfleg.references) > 0.5


def test_detokenising_then_retokenising_jfleg_barely_moves_the_score(jfleg) -> None:
    round_trip = [jfleg_tokenize(jfleg_detokenize(s)) for s in jfleg.sources]
    changed = sum(a.split() != b.split() for a, b in zip(round_trip, jfleg.sources))
    assert changed < 10
    baseline = gleu(jfleg.sources, jfleg.sources, jfleg.references)
    assert gleu(jfleg.sources, round_trip, jfleg.references) == pytest.approx(baseline, abs=0.002)


# --- JFLEG-style tokenisation ------------------------------------------------------


@pytest.mark.parametrize(
    ("plain", "tokenised"),
    [
        ("I don't know, Mr. Smith.", "I do n't know , Mr. Smith ."),
        ("It costs 1,000 dollars (roughly).", "It costs 1,000 dollars ( roughly ) ."),
        ('He said: "go!"', 'He said : " go ! "'),
        ("It's a well-known fact...", "It 's a well-known fact ..."),
        ("He lists cats, dogs, etc.", "He lists cats , dogs , etc ."),
    ],
)
def test_tokenise_and_detokenise_are_inverse_on_ordinary_text(plain: str, tokenised: str) -> None:
    assert jfleg_tokenize(plain) == tokenised
    assert jfleg_detokenize(tokenised) == plain


# --- WER -----------------------------------------------------------------------------


def test_normaliser_lowercases_and_drops_punctuation() -> None:
    assert normalize_for_wer("Hello, World!  It's me.") == "hello world its me"


def test_identical_text_has_zero_wer_after_normalisation() -> None:
    assert wer(["Hello, world."], ["hello world"]) == 0.0


def test_one_substitution_in_four_words_is_a_quarter() -> None:
    assert wer(["the cat sat down"], ["the cat sat up"]) == pytest.approx(0.25)


def test_insertions_and_deletions_each_count_one_edit() -> None:
    assert wer(["a b c"], ["a x b c"]) == pytest.approx(1 / 3)
    assert wer(["a b c"], ["a c"]) == pytest.approx(1 / 3)
    assert wer(["a b"], ["x y z w"]) == pytest.approx(2.0)  # can exceed 1


def test_wer_is_pooled_over_the_corpus() -> None:
    # 1 edit over 1 + 3 reference words, not the mean of 1.0 and 0.0.
    assert wer(["a", "b c d"], ["x", "b c d"]) == pytest.approx(0.25)


def test_wer_rejects_mismatched_or_empty_references() -> None:
    with pytest.raises(ValueError, match="hypotheses"):
        wer(["a"], [])
    with pytest.raises(ValueError, match="no words"):
        wer(["!!"], [""])
