"""Output-quality metrics: JFLEG GLEU for grammar correction, WER for speech.

Pure stdlib (numpy-free on purpose: these run inside benchmarks and the demo, where
a metric must never be the reason an install pulls in a dependency).

GLEU follows the JFLEG repository's ``gleu.py`` (Napoles et al. 2015, revised 2016):

* Sentences are split on whitespace only; JFLEG text is already tokenised, so system
  output must be tokenised the same way first (see :func:`jfleg_tokenize`).
* Per sentence ``i`` and chosen reference ``r``, for n = 1..4 with Counter
  (clipped, multiset) intersections ``&``::

      numerator_n   = max(0, |H_n & R_n| - |H_n & (S_n \\ R_n)|)
      denominator_n = max(0, len(h) + 1 - n)

  where ``S_n \\ R_n`` keeps the source n-grams (with their source counts) whose key
  never occurs in the reference: copying an uncorrected source n-gram is penalised.
* Statistics (hyp length, ref length, numerators, denominators) are summed over the
  corpus; ``GLEU = BP * exp(mean_n log(num_n / den_n))`` with
  ``BP = exp(min(0, 1 - ref_len / hyp_len))``; any zero statistic gives 0.

The official ``compute_gleu`` picks one reference at random per sentence, 500 times
(``random.seed(101 * j)`` for iteration ``j``), and reports the mean over iterations.
:func:`gleu` is the deterministic variant: corpus GLEU against reference set 0,
then set 1, ... and the mean of those scores. :func:`gleu_sampled` reproduces the
official sampling loop; its indices come from Python 3's ``random.randint``, which
draws differently from the Python 2 the script was written for, so it matches the
official procedure, not its exact digits.
"""

from __future__ import annotations

import math
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "JflegSet",
    "gleu",
    "gleu_sampled",
    "jfleg_detokenize",
    "jfleg_tokenize",
    "load_jfleg",
    "normalize_for_wer",
    "wer",
]

_NgramCounts = Counter[tuple[str, ...]]


@dataclass(frozen=True)
class JflegSet:
    """A JFLEG split: ``references[k][i]`` is annotator ``k``'s correction of ``sources[i]``."""

    sources: tuple[str, ...]
    references: tuple[tuple[str, ...], ...]


def load_jfleg(directory: Path, split: str = "dev") -> JflegSet:
    """Read ``{split}.src`` and every ``{split}.ref*`` file (sorted) from ``directory``."""
    directory = Path(directory)
    src_path = directory / f"{split}.src"
    ref_paths = sorted(directory.glob(f"{split}.ref*"))
    if not src_path.is_file() or not ref_paths:
        raise FileNotFoundError(f"expected {split}.src and {split}.ref0.. in {directory}")
    sources = tuple(_read_lines(src_path))
    references = tuple(tuple(_read_lines(p)) for p in ref_paths)
    for path, refs in zip(ref_paths, references):
        if len(refs) != len(sources):
            raise ValueError(f"{path.name} has {len(refs)} lines, {src_path.name} has {len(sources)}")
    return JflegSet(sources, references)


def _read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").rstrip("\n").split("\n")


def _ngrams(tokens: Sequence[str], n: int) -> _NgramCounts:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) + 1 - n))


def _sentence_stats(
    source: Sequence[str], hypothesis: Sequence[str], reference: Sequence[str], order: int
) -> list[int]:
    """``[hyp_len, ref_len, num_1, den_1, ..., num_order, den_order]`` for one sentence."""
    stats = [len(hypothesis), len(reference)]
    for n in range(1, order + 1):
        h, s, r = _ngrams(hypothesis, n), _ngrams(source, n), _ngrams(reference, n)
        source_not_in_ref = Counter({k: v for k, v in s.items() if k not in r})
        matched = sum((h & r).values()) - sum((h & source_not_in_ref).values())
        stats += [max(matched, 0), max(len(hypothesis) + 1 - n, 0)]
    return stats


def _corpus_gleu(stats: Sequence[int], order: int) -> float:
    if any(x == 0 for x in stats):
        return 0.0
    hyp_len, ref_len = stats[0], stats[1]
    log_precision = sum(math.log(num / den) for num, den in zip(stats[2::2], stats[3::2])) / order
    return math.exp(min(0.0, 1.0 - ref_len / hyp_len) + log_precision)


def _all_stats(
    sources: Sequence[str],
    hypotheses: Sequence[str],
    reference_sets: Sequence[Sequence[str]],
    n: int,
) -> list[list[list[int]]]:
    """``stats[i][k]``: sentence statistics of hypothesis ``i`` against reference set ``k``."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if len(hypotheses) != len(sources):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(sources)} sources")
    if not reference_sets:
        raise ValueError("references_lists is empty: need at least one reference set")
    for k, refs in enumerate(reference_sets):
        if len(refs) != len(sources):
            raise ValueError(f"reference set {k} has {len(refs)} sentences, sources have {len(sources)}")
    return [
        [_sentence_stats(src.split(), hyp.split(), refs[i].split(), n) for refs in reference_sets]
        for i, (src, hyp) in enumerate(zip(sources, hypotheses))
    ]


def gleu(
    sources: Sequence[str],
    hypotheses: Sequence[str],
    references_lists: Sequence[Sequence[str]],
    n: int = 4,
) -> float:
    """Corpus GLEU in [0, 1], averaged over reference sets (deterministic variant).

    ``references_lists[k][i]`` is the ``k``-th reference for ``sources[i]`` (one list per
    annotator, as JFLEG's ``dev.ref0..3`` files). All text is whitespace-tokenised.
    """
    stats = _all_stats(sources, hypotheses, references_lists, n)
    scores = []
    for k in range(len(references_lists)):
        totals = [sum(col) for col in zip(*(per_ref[k] for per_ref in stats))]
        scores.append(_corpus_gleu(totals, n) if totals else 0.0)
    return sum(scores) / len(scores)


def gleu_sampled(
    sources: Sequence[str],
    hypotheses: Sequence[str],
    references_lists: Sequence[Sequence[str]],
    n: int = 4,
    iterations: int = 500,
) -> float:
    """Corpus GLEU as the official ``compute_gleu`` reports it: the mean over ``iterations``
    random draws of one reference per sentence (seeded ``101 * j`` per iteration ``j``)."""
    stats = _all_stats(sources, hypotheses, references_lists, n)
    # A private generator, so callers' global random state is left alone.
    rng = random.Random()
    scores = []
    for j in range(iterations):
        rng.seed(j * 101)
        picks = [rng.randint(0, len(references_lists) - 1) for _ in stats]
        totals = [sum(col) for col in zip(*(per_ref[k] for per_ref, k in zip(stats, picks)))]
        scores.append(_corpus_gleu(totals, n) if totals else 0.0)
    return sum(scores) / len(scores)


# JFLEG's tokenisation is Penn-Treebank-like: punctuation and clitics ('s, n't) are
# separate tokens, hyphenated words, abbreviations and numbers stay whole, quotes are ".
_CLITIC = re.compile(r"(?i)(\w)(n't|'s|'re|'ve|'m|'ll|'d)\b")
_ALWAYS_SPLIT = re.compile(r"""(\.\.\.|[!?"()\[\]{}]|,(?!\d)|(?<!\d),|[:;](?=\s|$))""")
_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "st", "etc", "vs", "e.g", "i.e", "jr", "sr"})


def jfleg_tokenize(text: str) -> str:
    """Tokenise plain text the way JFLEG references are (``"I don't."`` -> ``"I do n't ."``)."""
    text = text.replace("\u2019", "'").replace("\u201c", '"').replace("\u201d", '"')
    text = _ALWAYS_SPLIT.sub(r" \1 ", _CLITIC.sub(r"\1 \2", text))
    words = text.split()
    tokens = []
    for i, tok in enumerate(words):
        # A word-final period ends a sentence unless it marks an abbreviation mid-text.
        abbreviation = tok[:-1].lower() in _ABBREVIATIONS and i < len(words) - 1
        if len(tok) > 1 and tok.endswith(".") and tok != "..." and not abbreviation:
            tokens += [tok[:-1], "."]
        else:
            tokens.append(tok)
    return " ".join(tokens)


def jfleg_detokenize(text: str) -> str:
    """Best-effort inverse of :func:`jfleg_tokenize`, to feed JFLEG sources to a model
    trained on plain text. Straight quotes are paired left to right."""
    out: list[str] = []
    open_quote = False
    attach_next = False
    for tok in text.split():
        if tok == '"':
            open_quote = not open_quote
            if open_quote:
                out.append(tok)
                attach_next = True
                continue
            tok_attaches = True
        else:
            tok_attaches = bool(re.fullmatch(r"[.,!?;:)\]}]|\.\.\.|n't|'s|'re|'ve|'m|'ll|'d", tok, re.I))
        if out and (tok_attaches or attach_next):
            out[-1] += tok
        else:
            out.append(tok)
        attach_next = tok in {"(", "[", "{"}
    return " ".join(out)


def normalize_for_wer(text: str) -> str:
    """Lowercase, drop apostrophes ("don't" -> "dont"), turn other punctuation and symbols
    into spaces, collapse whitespace."""
    chars = []
    for ch in unicodedata.normalize("NFKC", text).lower():
        if ch in "'\u2019":
            continue
        chars.append(" " if unicodedata.category(ch)[0] in "PS" else ch)
    return " ".join("".join(chars).split())


def _edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i]
        for j, h in enumerate(hyp, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h)))
        prev = cur
    return prev[-1]


def wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus word error rate: total word edits / total reference words, after
    :func:`normalize_for_wer`. Can exceed 1.0 when the hypotheses insert words."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    edits = words = 0
    for ref, hyp in zip(references, hypotheses):
        ref_words, hyp_words = normalize_for_wer(ref).split(), normalize_for_wer(hyp).split()
        edits += _edit_distance(ref_words, hyp_words)
        words += len(ref_words)
    if words == 0:
        raise ValueError("references contain no words after normalisation; WER is undefined")
    return edits / words
