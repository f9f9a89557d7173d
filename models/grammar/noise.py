"""Synthetic learner-style errors for clean English sentences (stdlib only).

Training pairs for the grammar model are (corrupted sentence -> original sentence).
Every random choice goes through the ``random.Random`` the caller passes in, so the
same seed always gives the same corruption.

The errors are rule-based: typos, article, preposition, subject-verb agreement and
tense errors on a table of common verbs, punctuation, capitalisation and dropped
words. How many errors a sentence gets is drawn per sentence (see ``NoiseConfig``),
so, as in learner text, some sentences are untouched and a few are badly broken.
"""

from __future__ import annotations

import enum
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Corruption", "ErrorType", "NoiseConfig", "corrupt", "inject"]


class ErrorType(enum.Enum):
    TYPO = "typo"
    ARTICLE = "article"
    PREPOSITION = "preposition"
    AGREEMENT = "agreement"
    TENSE = "tense"
    PUNCTUATION = "punctuation"
    CAPITALISATION = "capitalisation"
    WORD_DROP = "word_drop"


_DEFAULT_WEIGHTS: tuple[tuple[ErrorType, float], ...] = (
    (ErrorType.TYPO, 0.24),
    (ErrorType.ARTICLE, 0.14),
    (ErrorType.PREPOSITION, 0.11),
    (ErrorType.AGREEMENT, 0.11),
    (ErrorType.TENSE, 0.10),
    (ErrorType.PUNCTUATION, 0.12),
    (ErrorType.CAPITALISATION, 0.08),
    (ErrorType.WORD_DROP, 0.10),
)


@dataclass(frozen=True)
class NoiseConfig:
    # Share of sentences left exactly as they are: the model must learn to copy correct text.
    clean_probability: float = 0.2
    # A noisy sentence gets max(1, Poisson(rate * words)) errors, with the rate drawn
    # uniformly per sentence from [min_rate, max_rate]: careful and careless writers.
    min_error_rate: float = 0.04
    max_error_rate: float = 0.2
    # Relative frequency of each error type; a type with no place in the sentence is redrawn.
    weights: tuple[tuple[ErrorType, float], ...] = _DEFAULT_WEIGHTS

    def __post_init__(self) -> None:
        if not 0.0 <= self.clean_probability <= 1.0:
            raise ValueError(f"clean_probability must be in [0, 1], got {self.clean_probability}")
        if not 0.0 <= self.min_error_rate <= self.max_error_rate:
            raise ValueError(
                f"need 0 <= min_error_rate <= max_error_rate, got {self.min_error_rate}, {self.max_error_rate}"
            )
        if not self.weights or any(w < 0 for _, w in self.weights) or sum(w for _, w in self.weights) <= 0:
            raise ValueError("weights must be non-negative with a positive sum")


@dataclass(frozen=True)
class Corruption:
    text: str
    errors: tuple[ErrorType, ...]  # in the order they were applied; empty when text is clean


@dataclass(frozen=True)
class _Tok:
    text: str
    space: bool  # whether whitespace precedes this token in the sentence
    touched: bool = False  # already edited: a second edit could undo the first


def _edit(tok: _Tok, text: str) -> _Tok:
    return _Tok(text, tok.space, touched=True)


_TOKEN = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)*|\d+(?:[.,:]\d+)*|\S")


def _split(sentence: str) -> list[_Tok]:
    return [_Tok(m.group(), m.start() > 0 and sentence[m.start() - 1].isspace()) for m in _TOKEN.finditer(sentence)]


def _join(tokens: list[_Tok]) -> str:
    return "".join((" " if t.space and i else "") + t.text for i, t in enumerate(tokens))


def _is_word(tok: _Tok) -> bool:
    return tok.text[:1].isalpha()


def _match_case(template: str, word: str) -> str:
    if template.isupper() and len(template) > 1:
        return word.upper()
    return word[0].upper() + word[1:] if template[0].isupper() else word


# --- word tables -----------------------------------------------------------------------

_KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _keyboard_neighbours() -> dict[str, str]:
    where = {c: (r, i) for r, row in enumerate(_KEYBOARD_ROWS) for i, c in enumerate(row)}
    return {
        c: "".join(o for o, (r2, i2) in where.items() if o != c and abs(r2 - r) <= 1 and abs(i2 - i) <= 1)
        for c, (r, i) in where.items()
    }


_NEIGHBOURS = _keyboard_neighbours()
_ARTICLES = {"a": ("the", "an"), "an": ("the", "a"), "the": ("a", "an", "a")}
_PREPOSITIONS = {
    "in": ("on", "at", "into"), "on": ("in", "at", "about"), "at": ("in", "on", "to"),
    "for": ("to", "of", "at"), "to": ("for", "at", "in"), "of": ("for", "about", "from"),
    "with": ("by", "to", "of"), "from": ("of", "by", "since"), "by": ("with", "from", "at"),
    "about": ("of", "on", "for"), "into": ("in", "to", "on"), "over": ("on", "above", "about"),
    "since": ("from", "for", "by"), "during": ("in", "while", "at"),
}  # fmt: skip
_AGREEMENT = {
    "is": "are", "are": "is", "was": "were", "were": "was", "has": "have", "have": "has",
    "does": "do", "do": "does", "doesn't": "don't", "don't": "doesn't", "isn't": "aren't",
    "aren't": "isn't", "wasn't": "weren't", "weren't": "wasn't",
}  # fmt: skip
_BE_TENSE = {
    "is": "was", "are": "were", "was": "is", "were": "are", "has": "had", "have": "had",
    "had": "has", "will": "would", "can": "could", "does": "did", "did": "does",
}  # fmt: skip
_PLURAL_SUBJECTS = frozenset({"i", "you", "we", "they"})
_FUNCTION_WORDS = frozenset(
    "a an the to of in on at for with is are was were be been has have had it that this "
    "and or but as by from will would can could do does did".split()
)
# Irregular verbs: base, third person singular, past, past participle.
_IRREGULAR = [
    ("go", "goes", "went", "gone"), ("make", "makes", "made", "made"),
    ("take", "takes", "took", "taken"), ("get", "gets", "got", "got"),
    ("give", "gives", "gave", "given"), ("come", "comes", "came", "come"),
    ("see", "sees", "saw", "seen"), ("know", "knows", "knew", "known"),
    ("think", "thinks", "thought", "thought"), ("say", "says", "said", "said"),
    ("tell", "tells", "told", "told"), ("find", "finds", "found", "found"),
    ("become", "becomes", "became", "become"), ("feel", "feels", "felt", "felt"),
    ("bring", "brings", "brought", "brought"), ("begin", "begins", "began", "begun"),
    ("keep", "keeps", "kept", "kept"), ("hold", "holds", "held", "held"),
    ("write", "writes", "wrote", "written"), ("stand", "stands", "stood", "stood"),
    ("hear", "hears", "heard", "heard"), ("mean", "means", "meant", "meant"),
    ("meet", "meets", "met", "met"), ("pay", "pays", "paid", "paid"),
    ("speak", "speaks", "spoke", "spoken"), ("grow", "grows", "grew", "grown"),
    ("lose", "loses", "lost", "lost"), ("send", "sends", "sent", "sent"),
    ("build", "builds", "built", "built"), ("understand", "understands", "understood", "understood"),
    ("buy", "buys", "bought", "bought"), ("spend", "spends", "spent", "spent"),
    ("choose", "chooses", "chose", "chosen"), ("eat", "eats", "ate", "eaten"),
    ("drive", "drives", "drove", "driven"), ("teach", "teaches", "taught", "taught"),
    ("sell", "sells", "sold", "sold"), ("win", "wins", "won", "won"),
    ("catch", "catches", "caught", "caught"), ("fight", "fights", "fought", "fought"),
]  # fmt: skip
# Regular verbs that are rarely nouns, so a changed form is a verb error, not a noun one.
_REGULAR = (
    "want seem happen include continue develop provide allow expect create decide agree "
    "reduce believe live move try ask arrive remain receive explain improve describe prefer "
    "enjoy learn wait stay add need help start open appear suggest consider announce "
    "confirm accept claim prepare discuss require return hope like love"
).split()


def _regular_forms(base: str) -> tuple[str, str, str, str]:
    if base.endswith("e"):
        past = base + "d"
    elif base.endswith("y") and base[-2] not in "aeiou":
        past = base[:-1] + "ied"
    elif base in {"prefer", "plan", "stop"}:
        past = base + base[-1] + "ed"
    else:
        past = base + "ed"
    if base.endswith(("s", "sh", "ch", "x", "o")):
        third = base + "es"
    elif base.endswith("y") and base[-2] not in "aeiou":
        third = base[:-1] + "ies"
    else:
        third = base + "s"
    return base, third, past, past


def _verb_index() -> dict[str, tuple[str, str, str, str]]:
    index: dict[str, tuple[str, str, str, str]] = {}
    for forms in [*_IRREGULAR, *(_regular_forms(b) for b in _REGULAR)]:
        for form in forms:
            index.setdefault(form, forms)
    return index


_VERBS = _verb_index()


# --- one function per error type: mutate ``toks`` and return True, or return False ---


def _typo(toks: list[_Tok], rng: random.Random) -> bool:
    spots = [i for i, t in enumerate(toks) if t.text.isalpha() and len(t.text) >= 3 and not t.touched]
    if not spots:
        return False
    i = rng.choice(spots)
    word = toks[i].text
    for _ in range(10):
        k = rng.randrange(len(word))
        op = rng.choice(("swap", "drop", "double", "neighbour_insert", "neighbour_replace"))
        lower = word[k].lower()
        near = _NEIGHBOURS.get(lower, "") or "e"
        if op == "swap" and k + 1 < len(word):
            new = word[:k] + word[k + 1] + word[k] + word[k + 2 :]
        elif op == "drop":
            new = word[:k] + word[k + 1 :]
        elif op == "double":
            new = word[: k + 1] + word[k] + word[k + 1 :]
        elif op == "neighbour_insert":
            new = word[:k] + rng.choice(near) + word[k:]
        else:
            c = rng.choice(near)
            new = word[:k] + (c.upper() if word[k].isupper() else c) + word[k + 1 :]
        if new != word and new:
            toks[i] = _edit(toks[i], new)
            return True
    return False


def _article(toks: list[_Tok], rng: random.Random) -> bool:
    have = [i for i, t in enumerate(toks) if t.text.lower() in _ARTICLES and not t.touched]
    # Learners add articles where one is plausible: after a preposition or a verb.
    room = [
        i
        for i, t in enumerate(toks[1:], 1)
        if t.text.isalpha() and t.text.islower() and len(t.text) > 3 and t.text not in _FUNCTION_WORDS
        and (toks[i - 1].text.lower() in _PREPOSITIONS or toks[i - 1].text.lower() in _VERBS)
    ]  # fmt: skip
    if not have and not room:
        return False
    if have and (not room or rng.random() < 0.7):
        i = rng.choice(have)
        old = toks[i].text
        if rng.random() < 0.5 and len(toks) > 2:
            del toks[i]
            if i < len(toks) and old[0].isupper() and _is_word(toks[i]):  # keep the sentence capitalised
                toks[i] = _edit(toks[i], _match_case(old, toks[i].text))
        else:
            toks[i] = _edit(toks[i], _match_case(old, rng.choice(_ARTICLES[old.lower()])))
        return True
    i = rng.choice(room)
    toks.insert(i, _Tok(rng.choice(("the", "the", "a")), toks[i].space, touched=True))
    toks[i + 1] = _Tok(toks[i + 1].text, True, toks[i + 1].touched)
    return True


def _substitute(toks: list[_Tok], rng: random.Random, table: dict[str, str | tuple[str, ...]]) -> bool:
    spots = [i for i, t in enumerate(toks) if t.text.lower() in table and not t.touched]
    if not spots:
        return False
    i = rng.choice(spots)
    choice = table[toks[i].text.lower()]
    new = choice if isinstance(choice, str) else rng.choice(choice)
    toks[i] = _edit(toks[i], _match_case(toks[i].text, new))
    return True


def _preposition(toks: list[_Tok], rng: random.Random) -> bool:
    return _substitute(toks, rng, _PREPOSITIONS)


def _agreement(toks: list[_Tok], rng: random.Random) -> bool:
    table: dict[str, str | tuple[str, ...]] = dict(_AGREEMENT)
    for i, t in enumerate(toks):
        forms = _VERBS.get(t.text.lower())
        if forms is None:
            continue
        base, third = forms[0], forms[1]
        if t.text.lower() == third != base:
            table[third] = base  # "she writes" -> "she write"
        elif t.text.lower() == base and i > 0 and toks[i - 1].text.lower() in _PLURAL_SUBJECTS:
            table[base] = third  # "they write" -> "they writes"
    return _substitute(toks, rng, table)


def _tense(toks: list[_Tok], rng: random.Random) -> bool:
    table: dict[str, str | tuple[str, ...]] = dict(_BE_TENSE)
    for t in toks:
        forms = _VERBS.get(t.text.lower())
        if forms is not None:
            others = tuple(f for f in dict.fromkeys(forms) if f != t.text.lower())
            regularised = forms[0] + ("d" if forms[0].endswith("e") else "ed")  # "goed", "buyed"
            if regularised not in forms:
                others += (regularised,)
            table[t.text.lower()] = others
    return _substitute(toks, rng, table)


def _punctuation(toks: list[_Tok], rng: random.Random) -> bool:
    marks = [i for i, t in enumerate(toks) if t.text in {",", ".", ";", ":", "!", "?"} and not t.touched]
    contractions = [
        i for i, t in enumerate(toks) if _is_word(t) and ("'" in t.text or "\u2019" in t.text) and not t.touched
    ]
    words = [i for i, t in enumerate(toks[:-1]) if _is_word(t) and _is_word(toks[i + 1])]
    options = [o for o, ok in (("drop", marks), ("apostrophe", contractions), ("comma", words)) if ok]
    if not options:
        return False
    op = rng.choice(options)
    if op == "drop":
        del toks[rng.choice(marks)]
    elif op == "apostrophe":  # "don't" -> "dont"
        i = rng.choice(contractions)
        toks[i] = _edit(toks[i], toks[i].text.replace("'", "").replace("\u2019", ""))
    else:
        toks.insert(rng.choice(words) + 1, _Tok(",", False, touched=True))
    return len(toks) > 0


def _capitalisation(toks: list[_Tok], rng: random.Random) -> bool:
    word_idx = [i for i, t in enumerate(toks) if _is_word(t)]
    if not word_idx:
        return False
    first = word_idx[0]
    options: list[tuple[int, str]] = []
    if toks[first].text[0].isupper():
        options.append((first, toks[first].text[0].lower() + toks[first].text[1:]))
    for i in word_idx[1:]:
        text = toks[i].text
        if text == "I":
            options.append((i, "i"))
        elif text[0].isupper() and not text.isupper():
            options.append((i, text.lower()))  # proper noun lower-cased
        elif text.islower() and len(text) > 3:
            options.append((i, text.capitalize()))
    options = [(i, new) for i, new in options if not toks[i].touched]
    if not options:
        return False
    i, new = rng.choice(options)
    toks[i] = _edit(toks[i], new)
    return True


def _word_drop(toks: list[_Tok], rng: random.Random) -> bool:
    word_idx = [i for i, t in enumerate(toks) if _is_word(t)]
    if len(word_idx) < 4:
        return False
    # Learners mostly omit small function words ("I going to school").
    free = [i for i in word_idx if not toks[i].touched]
    function = [i for i in free if toks[i].text.lower() in _FUNCTION_WORDS]
    if not free:
        return False
    i = rng.choice(function if function and rng.random() < 0.7 else free)
    old = toks.pop(i)
    if i < len(toks) and i == word_idx[0] and old.text[0].isupper() and _is_word(toks[i]):
        toks[i] = _edit(toks[i], _match_case(old.text, toks[i].text))
    return True


_APPLY: dict[ErrorType, Callable[[list[_Tok], random.Random], bool]] = {
    ErrorType.TYPO: _typo,
    ErrorType.ARTICLE: _article,
    ErrorType.PREPOSITION: _preposition,
    ErrorType.AGREEMENT: _agreement,
    ErrorType.TENSE: _tense,
    ErrorType.PUNCTUATION: _punctuation,
    ErrorType.CAPITALISATION: _capitalisation,
    ErrorType.WORD_DROP: _word_drop,
}


# --- public API --------------------------------------------------------------------------


def inject(sentence: str, error: ErrorType, rng: random.Random) -> str | None:
    """``sentence`` with one error of type ``error``, or None when it has no place for one."""
    toks = _split(sentence)
    if not _APPLY[error](toks, rng):
        return None
    text = _join(toks)
    return text if text.strip() and text != sentence else None


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method: exact and fast for the small means used here.
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def corrupt(sentence: str, rng: random.Random, config: NoiseConfig = NoiseConfig()) -> Corruption:
    """Inject a learner-like number of errors into ``sentence``.

    The result is never empty; when no error could be placed it is the sentence itself.
    """
    if not sentence.strip() or rng.random() < config.clean_probability:
        return Corruption(sentence, ())
    toks = _split(sentence)
    n_words = sum(_is_word(t) for t in toks)
    rate = rng.uniform(config.min_error_rate, config.max_error_rate)
    n_errors = max(1, _poisson(rng, rate * n_words))
    types = [t for t, _ in config.weights]
    weights = [w for _, w in config.weights]
    applied: list[ErrorType] = []
    for _ in range(n_errors * 4):  # redraw when a type has no place in this sentence
        if len(applied) == n_errors:
            break
        kind = rng.choices(types, weights)[0]
        trial = list(toks)
        if _APPLY[kind](trial, rng) and _join(trial).strip():
            toks = trial
            applied.append(kind)
    text = _join(toks)
    if not applied or text == sentence:
        return Corruption(sentence, ())
    return Corruption(text, tuple(applied))
