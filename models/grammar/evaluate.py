"""GLEU of a grammar checkpoint on JFLEG dev: the full model and every decoder exit.

    python -m models.grammar.evaluate --checkpoint models/grammar/checkpoint [--limit N]

Exit k runs the encoder, the first k decoder layers, then the shared final norm and LM
head, decoding greedily with a KV cache. The model was trained on plain text, so JFLEG's
tokenised sources are detokenised before correction and the outputs tokenised again
before scoring (the round trip alone moves the no-change GLEU by under 0.001).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer
from tqdm import tqdm
from transformers import T5ForConditionalGeneration
from transformers.cache_utils import DynamicCache, EncoderDecoderCache

from edgeseq.quality import JflegSet, gleu, jfleg_detokenize, jfleg_tokenize, load_jfleg

PAD = 0


def default_jfleg_dir() -> Path:
    """``shared/data/jfleg-dev`` beside the repository root."""
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "jfleg-dev"


@dataclass(frozen=True)
class ExitScore:
    exit: int  # decoder layers run; the last exit is the full model
    gleu: float
    changed: float  # share of sentences the model edited
    seconds: float  # wall time to correct the whole set


@dataclass(frozen=True)
class Report:
    sentences: int
    no_change_gleu: float
    exits: tuple[ExitScore, ...]


@contextlib.contextmanager
def decoder_exit(model: T5ForConditionalGeneration, layers: int) -> Iterator[None]:
    """Within the block, the decoder runs only its first ``layers`` blocks; the stack's
    final norm and the LM head then read that layer's output (the trained exit)."""
    blocks = model.decoder.block
    if not 1 <= layers <= len(blocks):
        raise ValueError(f"exit must be in 1..{len(blocks)}, got {layers}")
    model.decoder.block = torch.nn.ModuleList(list(blocks)[:layers])
    try:
        yield
    finally:
        model.decoder.block = blocks


@torch.no_grad()
def correct(
    model: T5ForConditionalGeneration,
    tokenizer: Tokenizer,
    sentences: Sequence[str],
    batch_size: int = 32,
    progress: bool = False,
) -> list[str]:
    """Greedy corrections of plain-text ``sentences``, in input order."""
    device = next(model.parameters()).device
    encoded = [e.ids for e in tokenizer.encode_batch(list(sentences))]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # similar lengths share a batch
    out: list[str] = [""] * len(encoded)
    starts = range(0, len(order), batch_size)
    for start in tqdm(starts, desc="correct", leave=False, disable=not progress):
        idx = order[start : start + batch_size]
        longest = max(len(encoded[i]) for i in idx)
        ids = torch.full((len(idx), longest), PAD, dtype=torch.long)
        for row, i in enumerate(idx):
            ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
        ids = ids.to(device)
        generated = model.generate(
            input_ids=ids,
            attention_mask=(ids != PAD).long(),
            do_sample=False,
            num_beams=1,
            max_new_tokens=int(longest * 1.5) + 8,
            # an empty cache grows per layer; the default one is sized from config.num_layers
            # (the encoder's depth in transformers 5) and breaks when the decoder is deeper
            past_key_values=EncoderDecoderCache(DynamicCache(), DynamicCache()),
        )
        for i, text in zip(idx, tokenizer.decode_batch(generated.tolist(), skip_special_tokens=True)):
            out[i] = text
    return out


@torch.no_grad()
def mean_log_prob(model: T5ForConditionalGeneration, source: list[int], target: list[int]) -> float:
    """Teacher-forced mean log-probability per token of ``target`` (EOS included)."""
    device = next(model.parameters()).device
    labels = torch.tensor([target], device=device)
    logits = model(input_ids=torch.tensor([source], device=device), labels=labels).logits[0]
    return float(torch.log_softmax(logits.float(), -1).gather(1, labels[0][:, None]).mean())


def keep_sources(model: T5ForConditionalGeneration, tokenizer: Tokenizer,
                 sources: Sequence[str], outputs: Sequence[str]) -> list[str]:
    """The runtime's ``rerank_source`` in PyTorch: each source replaces its correction when
    the model scores it at least as high per token (runtime/rerank.py)."""
    kept = []
    for source, output in zip(sources, outputs):
        src, out = tokenizer.encode(source).ids, tokenizer.encode(output).ids
        better = src != out and mean_log_prob(model, src, src) >= mean_log_prob(model, src, out)
        kept.append(source if better else output)
    return kept


def evaluate(
    model: T5ForConditionalGeneration,
    tokenizer: Tokenizer,
    data: JflegSet,
    exits: Sequence[int] | None = None,
    batch_size: int = 32,
    progress: bool = False,
    rerank_source: bool = False,
) -> Report:
    """Score greedy corrections of ``data`` at each exit (default: all, shallowest first)."""
    model.eval()
    plain = [jfleg_detokenize(s) for s in data.sources]
    layers = model.config.num_decoder_layers
    scores = []
    for k in exits or range(1, layers + 1):
        t0 = time.perf_counter()
        with decoder_exit(model, k):
            outputs = correct(model, tokenizer, plain, batch_size, progress)
            if rerank_source:
                outputs = keep_sources(model, tokenizer, plain, outputs)
            hypotheses = [jfleg_tokenize(h) for h in outputs]
        seconds = time.perf_counter() - t0
        changed = sum(h.split() != s.split() for h, s in zip(hypotheses, data.sources)) / len(hypotheses)
        scores.append(ExitScore(k, gleu(data.sources, hypotheses, data.references), changed, seconds))
    baseline = gleu(data.sources, data.sources, data.references)
    return Report(len(data.sources), baseline, tuple(scores))


def _limit(data: JflegSet, n: int | None) -> JflegSet:
    if n is None:
        return data
    return JflegSet(data.sources[:n], tuple(refs[:n] for refs in data.references))


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True, help="save_pretrained folder with tokenizer.json")
    p.add_argument("--jfleg", type=Path, default=None, help="folder with dev.src, dev.ref0..3")
    p.add_argument("--exits", type=int, nargs="*", default=None, help="decoder exits to score (default: all)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--limit", type=int, default=None, help="score only the first N sentences")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", type=Path, default=None, help="also write the report here")
    p.add_argument("--rerank-source", action="store_true",
                   help="keep a sentence unchanged when the model scores it above its correction "
                        "(the package's default decoding)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    data = _limit(load_jfleg(a.jfleg or default_jfleg_dir()), a.limit)
    model = T5ForConditionalGeneration.from_pretrained(a.checkpoint).to(a.device)
    tokenizer = Tokenizer.from_file(str(a.checkpoint / "tokenizer.json"))
    report = evaluate(model, tokenizer, data, a.exits, a.batch_size, progress=True,
                      rerank_source=a.rerank_source)

    rule = "greedy + rerank_source" if a.rerank_source else "greedy"
    print(f"JFLEG dev, {report.sentences} sentences, {rule}; no-change GLEU {report.no_change_gleu:.4f}")
    print(f"{'exit':>5} {'GLEU':>7} {'vs no-change':>13} {'changed':>8} {'seconds':>8}")
    for s in report.exits:
        label = f"{s.exit}" + (" (full)" if s.exit == model.config.num_decoder_layers else "")
        print(f"{label:>5} {s.gleu:7.4f} {s.gleu - report.no_change_gleu:+13.4f} {s.changed:8.1%} {s.seconds:8.1f}")
    if a.json:
        a.json.write_text(json.dumps(asdict(report), indent=2) + "\n")


if __name__ == "__main__":
    main()
