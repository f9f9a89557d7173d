"""(noisy -> clean) sentence pairs and the tokenizer for edgeseq's grammar model.

Clean text is English news (WMT newstest 2015-2019) for training and FLORES-200
devtest for validation, both from the shared data folder beside the repository.
Each sentence yields several noisy variants; each variant is seeded from
``(seed, split, sentence index, variant)`` alone, so a pair does not depend on the
sentences after it, and the same configuration always builds the same data. The
tokenizer is trained on the clean training sentences (see ``train_tokenizer``).
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from models.grammar.noise import NoiseConfig, corrupt

__all__ = [
    "DataConfig",
    "Pair",
    "build_datasets",
    "default_data_dir",
    "make_pairs",
    "read_sentences",
    "train_tokenizer",
]

PAD, EOS, UNK = 0, 1, 2  # T5's special token ids


def default_data_dir() -> Path:
    """``shared/data/news`` beside the repository root (this file is models/grammar/data.py)."""
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "news"


@dataclass(frozen=True)
class Pair:
    source: str  # with injected errors, or identical to target for a clean example
    target: str  # the original sentence


@dataclass(frozen=True)
class DataConfig:
    train_path: Path = field(default_factory=lambda: default_data_dir() / "newstest2015-2019.en")
    valid_path: Path = field(default_factory=lambda: default_data_dir() / "flores200-devtest.en")
    # Noisy variants per training sentence: more variants = more error patterns per
    # sentence without more clean text. Validation uses one variant per sentence.
    train_variants: int = 6
    valid_variants: int = 1
    seed: int = 0
    # Longer sentences are dropped: they are rare, and the model trains with short batches.
    max_words: int = 50
    noise: NoiseConfig = NoiseConfig()

    def __post_init__(self) -> None:
        if self.train_variants < 1 or self.valid_variants < 1:
            raise ValueError(
                f"train_variants and valid_variants must be >= 1, got {self.train_variants}, {self.valid_variants}"
            )
        if self.max_words < 1:
            raise ValueError(f"max_words must be >= 1, got {self.max_words}")


def read_sentences(path: Path, max_words: int | None = None) -> list[str]:
    """Non-empty, whitespace-normalised lines of ``path``, at most ``max_words`` words each."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training text not found: {path} (expected the shared data folder)")
    sentences = []
    for line in path.read_text(encoding="utf-8").splitlines():
        words = line.split()
        if words and (max_words is None or len(words) <= max_words):
            sentences.append(" ".join(words))
    return sentences


def make_pairs(
    sentences: Iterable[str], variants: int, seed: int, noise: NoiseConfig = NoiseConfig(), tag: str = ""
) -> list[Pair]:
    """``variants`` noisy copies of each sentence; duplicate sources of one sentence are
    kept once, so a sentence left clean by several draws adds a single copy pair."""
    pairs = []
    for i, sentence in enumerate(sentences):
        seen: set[str] = set()
        for v in range(variants):
            # String seeds hash with SHA-512 in CPython: stable across runs and platforms.
            rng = random.Random(f"{seed}:{tag}:{i}:{v}")
            noisy = corrupt(sentence, rng, noise).text
            if noisy not in seen:
                seen.add(noisy)
                pairs.append(Pair(noisy, sentence))
    return pairs


def build_datasets(config: DataConfig = DataConfig()) -> tuple[list[Pair], list[Pair]]:
    """(train pairs, validation pairs) as configured."""
    train = read_sentences(config.train_path, config.max_words)
    valid = read_sentences(config.valid_path, config.max_words)
    return (
        make_pairs(train, config.train_variants, config.seed, config.noise, tag="train"),
        make_pairs(valid, config.valid_variants, config.seed, config.noise, tag="valid"),
    )


def train_tokenizer(sentences: Sequence[str], vocab_size: int) -> Tokenizer:
    """A T5-style tokenizer (Metaspace, appends </s>, pad=0 eos=1 unk=2) trained on ``sentences``.

    BPE rather than T5's unigram: the `tokenizers` unigram trainer gives run-to-run
    different scores and ids, BPE is reproducible. Punctuation is split off words so a
    punctuation edit changes one token, not the word it is glued to.
    """
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always"),
            pre_tokenizers.Punctuation("isolated"),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "</s>", "<unk>"],
        # Every printable ASCII character stays a piece, so learner typos never become <unk>.
        initial_alphabet=list(string.printable.strip()),
        show_progress=False,
    )
    tok.train_from_iterator(sentences, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", EOS)]
    )
    ids = [tok.token_to_id(t) for t in ("<pad>", "</s>", "<unk>")]
    if ids != [PAD, EOS, UNK]:
        raise RuntimeError(f"special token ids are {ids}, expected [0, 1, 2]")
    return tok
