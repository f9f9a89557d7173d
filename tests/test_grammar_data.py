"""Specifications for the grammar model's synthetic training data (models/grammar)."""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

import pytest

# models/ is a folder at the repository root, not part of the installed edgeseq package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.grammar.data import (  # noqa: E402
    DataConfig,
    Pair,
    build_datasets,
    default_data_dir,
    make_pairs,
    train_tokenizer,
)
from models.grammar.noise import ErrorType, NoiseConfig, corrupt, inject  # noqa: E402

RICH = (
    "The new rules, which they don't like, were written by the minister in Paris "
    "and she writes that they go to school."
)
SENTENCES = [
    RICH,
    "India is also reportedly hoping for a deal on defence collaboration between the two nations.",
    "He is due to appear in Karratha Magistrates Court on September 23.",
    "Police say the rider then failed to stop and continued on to Burgess Road.",
    "I think an apple a day keeps the doctor away.",
]


def _words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text)


def _only(error: ErrorType) -> NoiseConfig:
    return NoiseConfig(clean_probability=0.0, weights=((error, 1.0),))


# --- noise: determinism --------------------------------------------------------------


def test_same_seed_gives_the_same_corruptions() -> None:
    first = [corrupt(s, random.Random(7)) for s in SENTENCES * 10]
    again = [corrupt(s, random.Random(7)) for s in SENTENCES * 10]
    assert first == again


def test_different_seeds_give_different_corruptions() -> None:
    a = [corrupt(s, random.Random(1), _only(ErrorType.TYPO)).text for s in SENTENCES]
    b = [corrupt(s, random.Random(2), _only(ErrorType.TYPO)).text for s in SENTENCES]
    assert a != b


# --- noise: every error type fires and does what its name says -------------------------


@pytest.mark.parametrize("error", list(ErrorType))
def test_every_error_type_fires_alone(error: ErrorType) -> None:
    result = corrupt(RICH, random.Random(0), _only(error))
    assert result.text != RICH
    assert result.errors and set(result.errors) == {error}


def _changed_words(before: str, after: str) -> tuple[list[str], list[str]]:
    """Words only in ``before``, words only in ``after`` (as multisets, case-sensitive)."""
    a, b = _words(before), _words(after)
    only_a, only_b = list(a), list(b)
    for w in a:
        if w in only_b:
            only_b.remove(w)
            only_a.remove(w)
    return only_a, only_b


@pytest.mark.parametrize("seed", range(20))
def test_single_errors_change_what_they_claim(seed: int) -> None:
    articles = {"a", "an", "the"}
    prepositions = {"in", "on", "at", "for", "to", "of", "with", "from", "by", "about", "into", "over", "since"}

    def one(error: ErrorType) -> tuple[str, list[str], list[str]]:
        out = inject(RICH, error, random.Random(seed))
        assert out is not None and out.strip()
        return (out, *_changed_words(RICH, out))

    _, gone, new = one(ErrorType.ARTICLE)
    assert {w.lower() for w in gone + new} & articles

    _, gone, new = one(ErrorType.PREPOSITION)
    assert len(gone) == len(new) == 1 and gone[0].lower() in prepositions

    out, gone, new = one(ErrorType.TYPO)
    assert len(_words(out)) == len(_words(RICH)) and len(gone) == len(new) == 1

    _, gone, new = one(ErrorType.AGREEMENT)
    assert len(gone) == len(new) == 1 and gone[0] in {"were", "writes", "don't", "go"}

    _, gone, new = one(ErrorType.TENSE)
    assert len(gone) == len(new) == 1

    out, _, _ = one(ErrorType.PUNCTUATION)
    assert re.sub(r"[^A-Za-z]", "", out) == re.sub(r"[^A-Za-z]", "", RICH)

    out, _, _ = one(ErrorType.CAPITALISATION)
    assert out.lower() == RICH.lower()

    out, _, _ = one(ErrorType.WORD_DROP)
    gone, new = _changed_words(RICH.lower(), out.lower())  # "The new" -> "New" keeps the capital
    assert len(gone) == 1 and not new


def test_subject_verb_and_tense_rules_follow_the_verb_table() -> None:
    seen = {inject("She writes letters.", ErrorType.AGREEMENT, random.Random(s)) for s in range(5)}
    assert seen == {"She write letters."}
    tensed = {inject("They go home.", ErrorType.TENSE, random.Random(s)) for s in range(40)}
    assert {"They went home.", "They gone home.", "They goed home."} <= tensed


def test_inject_reports_when_a_sentence_has_no_place_for_the_error() -> None:
    assert inject("Hello", ErrorType.PREPOSITION, random.Random(0)) is None
    assert inject("Yes.", ErrorType.WORD_DROP, random.Random(0)) is None


# --- noise: output is never empty, and the error rate looks like learner text --------


@pytest.mark.parametrize("sentence", ["a", "I", ".", "Hi!", "The the the.", "don't", "A cat.", "x y z w"])
def test_output_is_never_empty(sentence: str) -> None:
    heavy = NoiseConfig(clean_probability=0.0, min_error_rate=1.0, max_error_rate=1.0)
    for seed in range(50):
        assert corrupt(sentence, random.Random(seed), heavy).text.strip()


def test_some_sentences_stay_clean_and_the_rest_have_a_few_errors() -> None:
    rng = random.Random(0)
    results = [corrupt(s, rng) for s in SENTENCES * 200]
    clean = sum(not r.errors for r in results) / len(results)
    assert 0.15 < clean < 0.3
    assert all(r.text == s for r, s in zip(results, SENTENCES * 200) if not r.errors)
    noisy = [len(r.errors) for r in results if r.errors]
    assert 1.5 < sum(noisy) / len(noisy) < 4
    assert max(noisy) >= 5  # a few sentences are badly broken


def test_noise_config_rejects_inconsistent_rates() -> None:
    with pytest.raises(ValueError, match="min_error_rate"):
        NoiseConfig(min_error_rate=0.3, max_error_rate=0.1)
    with pytest.raises(ValueError, match="clean_probability"):
        NoiseConfig(clean_probability=1.5)


# --- pairs ---------------------------------------------------------------------------


def test_pairs_are_seeded_and_targets_are_the_clean_sentences() -> None:
    pairs = make_pairs(SENTENCES, variants=4, seed=3)
    assert pairs == make_pairs(SENTENCES, variants=4, seed=3)
    assert pairs != make_pairs(SENTENCES, variants=4, seed=4)
    assert {p.target for p in pairs} == set(SENTENCES)
    assert all(p.source.strip() for p in pairs)


def test_pairs_of_a_prefix_are_a_prefix_of_the_pairs() -> None:
    # Each variant is seeded by its own (seed, index, variant), not by a shared stream.
    full = make_pairs(SENTENCES, variants=3, seed=0)
    part = make_pairs(SENTENCES[:2], variants=3, seed=0)
    assert full[: len(part)] == part


def test_variants_of_one_sentence_are_distinct() -> None:
    pairs = make_pairs([RICH], variants=8, seed=0)
    assert len({p.source for p in pairs}) == len(pairs) >= 5


def test_shared_news_builds_train_and_validation_pairs() -> None:
    if not (default_data_dir() / "newstest2015-2019.en").is_file():
        pytest.skip(f"shared news text not found in {default_data_dir()}")
    train, valid = build_datasets(DataConfig(train_variants=1))
    assert len(train) > 12_000 and 900 < len(valid) <= 1012
    assert all(isinstance(p, Pair) and p.source and p.target for p in train + valid)
    assert sum(p.source != p.target for p in train) / len(train) > 0.7


# --- tokenizer -----------------------------------------------------------------------


def test_tokenizer_is_reproducible_t5_style_and_round_trips() -> None:
    corpus = [p.target for p in make_pairs(SENTENCES, variants=1, seed=0)] * 3
    first, again = train_tokenizer(corpus, 300), train_tokenizer(corpus, 300)
    assert first.to_str() == again.to_str()
    assert [first.token_to_id(t) for t in ("<pad>", "</s>", "<unk>")] == [0, 1, 2]
    encoded = first.encode("Teh cat's mat, in Tokyo!")
    assert encoded.ids[-1] == 1  # </s> appended, as T5's tokenizer does
    assert 2 not in encoded.ids  # typos and punctuation never become <unk>
    assert first.decode(encoded.ids) == "Teh cat's mat, in Tokyo!"
