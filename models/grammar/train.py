"""Train edgeseq's grammar-correction model: a small T5 v1.1 with LayerSkip-style exits.

    python -m models.grammar.train --out models/grammar/checkpoint [--steps N[,N2,...]] [--device cpu|cuda]
    # the shipped model, in one command (about 2 hours on two CPU cores):
    python -m models.grammar.train --out models/grammar/checkpoint --threads 2 --steps 4000,15000,22000 --max-tokens 48

Recipe (LayerSkip, Elhoushi et al. 2024, adapted to an encoder-decoder):
  * layer dropout on decoder layers, rising linearly with depth from 0 at layer 1 to
    ``--layer-dropout`` at the last layer, per example (the layer's output is replaced
    by its input), so the upper layers learn to refine rather than rewrite;
  * an early-exit loss at every decoder layer through the shared final RMSNorm and LM
    head, weighted k / L for exit k < L and 1 for the full model, so exiting after any
    decoder layer gives usable tokens (``--no-exit-loss`` trains the last exit only).

The output directory holds ``save_pretrained`` files, ``tokenizer.json`` (an 8k BPE
vocabulary trained on the training text, T5 special ids pad=0, eos=1, unk=2),
``edgeseq_exits.json``, ``train_state.pt`` (for resuming: rerun the same command) and
``train_log.jsonl``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from tqdm import tqdm
from transformers import T5Config, T5ForConditionalGeneration

from models.grammar.data import EOS, PAD, DataConfig, Pair, build_datasets, train_tokenizer

IGNORE = -100  # label of padding positions
NO_REPEAT_NGRAM = 3  # the generation default saved with the model (see save())
COPY_BIAS = 1.0  # likewise (see save())


@dataclass(frozen=True)
class ModelShape:
    # 256 wide x 4+4 layers, 8k tied vocabulary: 11.5M parameters (46 MB fp32, ~12 MB int8),
    # small enough to train on two CPU cores in about two hours and to decode fast on-device.
    vocab_size: int = 8000
    d_model: int = 256
    d_ff: int = 1024
    d_kv: int = 32
    num_heads: int = 8
    encoder_layers: int = 4
    decoder_layers: int = 4
    dropout: float = 0.1


# "small": 128 wide, 3 encoder + 4 decoder layers, a 4k vocabulary, 2.6M parameters: the
# four exit heads cost little, so it trains on two shared CPU cores in about an hour;
# "base" is the 11.5M model above (for a GPU or a quiet machine).
SHAPES = {"base": ModelShape(),
          "small": ModelShape(vocab_size=4000, d_model=128, d_ff=512, d_kv=32, num_heads=4,
                              encoder_layers=3, decoder_layers=4)}


@dataclass(frozen=True)
class TrainConfig:
    out: Path
    steps: int = 6000
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 400
    weight_decay: float = 0.01
    exit_loss: bool = True
    layer_dropout: float = 0.2  # at the last decoder layer; linear from 0 at the first
    max_tokens: int = 96  # pairs with a longer side are skipped
    seed: int = 0
    device: str = "cpu"
    save_every: int = 500
    eval_every: int = 500
    shape: ModelShape = ModelShape()
    data: DataConfig = DataConfig()

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.save_every < 1 or self.eval_every < 1:
            raise ValueError("steps, batch_size, save_every and eval_every must all be >= 1")
        if not 0.0 <= self.layer_dropout < 1.0:
            raise ValueError(f"layer_dropout must be in [0, 1), got {self.layer_dropout}")
        if self.device not in {"cpu", "cuda"}:
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}")


# --- model -------------------------------------------------------------


def build_model(shape: ModelShape) -> T5ForConditionalGeneration:
    config = T5Config(
        vocab_size=shape.vocab_size,
        d_model=shape.d_model,
        d_ff=shape.d_ff,
        d_kv=shape.d_kv,
        num_heads=shape.num_heads,
        num_layers=shape.encoder_layers,
        num_decoder_layers=shape.decoder_layers,
        feed_forward_proj="gated-gelu",  # T5 v1.1 feed-forward
        # transformers 5 always ties T5's head to the shared embedding; False here selects
        # unscaled logits (config.scale_decoder_outputs = False), so exit k is head(norm(h_k)).
        tie_word_embeddings=False,
        dropout_rate=shape.dropout,
        pad_token_id=PAD,
        eos_token_id=EOS,
        decoder_start_token_id=PAD,
    )
    model = T5ForConditionalGeneration(config)
    if model.config.scale_decoder_outputs:
        raise RuntimeError("expected unscaled T5 logits (scale_decoder_outputs=False); check transformers >= 5")
    # Std d**-0.5 instead of T5's 1.0 for the shared embedding and head: logits start
    # near uniform (std 1, not 16), and small token embeddings let the copy circuit
    # (decoder token -> same source token -> next source token) form sooner. In short
    # H100 probes this beat T5's std-1 init with rescaled logits (validation loss about
    # 5.5 vs 6.0 after 1,000 steps); with that init lr 2e-3 was worse and 3e-3 diverged.
    torch.nn.init.normal_(model.shared.weight, std=shape.d_model**-0.5)
    return model


def exit_logits(model: T5ForConditionalGeneration, hidden: torch.Tensor) -> torch.Tensor:
    """Logits of a decoder hidden state [B, T, d] through the shared final norm and head."""
    h = model.decoder.dropout(model.decoder.final_layer_norm(hidden))
    if model.config.scale_decoder_outputs:
        h = h * (model.config.d_model**-0.5)
    return model.lm_head(h)


def exit_weights(num_layers: int, exit_loss: bool) -> list[float]:
    """Loss weight per decoder exit 1..L, summing to 1."""
    raw = [k / num_layers for k in range(1, num_layers)] + [1.0] if exit_loss else [0.0] * (num_layers - 1) + [1.0]
    return [w / sum(raw) for w in raw]


@contextlib.contextmanager
def decoder_taps(model: T5ForConditionalGeneration, drop_rates: Sequence[float]) -> Iterator[list[torch.Tensor]]:
    """Within the block, each decoder forward appends every layer's output [B, T, d] to
    the yielded list; in training mode layer ``i`` is skipped per example with
    probability ``drop_rates[i]`` (its output replaced by its input)."""
    outputs: list[torch.Tensor] = []

    def hook(module, args, kwargs, output, rate: float):  # noqa: ANN001, ANN202 (torch hook signature)
        hidden = output[0]
        if module.training and rate > 0:
            keep = torch.rand(hidden.shape[0], 1, 1, device=hidden.device) >= rate
            hidden = torch.where(keep, hidden, args[0])
        outputs.append(hidden)
        return (hidden, *output[1:])

    handles = [
        block.register_forward_hook(lambda m, a, k, o, r=rate: hook(m, a, k, o, r), with_kwargs=True)
        for block, rate in zip(model.decoder.block, drop_rates)
    ]
    try:
        yield outputs
    finally:
        for h in handles:
            h.remove()


# --- data ------------------------------------------------------------------------------

Example = tuple[list[int], list[int]]


def encode_pairs(tokenizer: Tokenizer, pairs: Sequence[Pair], max_tokens: int) -> list[Example]:
    src = tokenizer.encode_batch([p.source for p in pairs])
    tgt = tokenizer.encode_batch([p.target for p in pairs])
    return [(s.ids, t.ids) for s, t in zip(src, tgt) if len(s.ids) <= max_tokens and len(t.ids) <= max_tokens]


def epoch_batches(examples: Sequence[Example], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Shuffled batches of similar length (less padding), a pure function of (seed, epoch)
    so a resumed run sees exactly the batches it would have seen."""
    rng = random.Random(f"{seed}:epoch:{epoch}")
    order = list(range(len(examples)))
    rng.shuffle(order)
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: len(examples[i][0]))
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(examples: Sequence[Example], device: str) -> dict[str, torch.Tensor]:
    src_len = max(len(s) for s, _ in examples)
    tgt_len = max(len(t) for _, t in examples)
    input_ids = torch.full((len(examples), src_len), PAD, dtype=torch.long)
    labels = torch.full((len(examples), tgt_len), IGNORE, dtype=torch.long)
    for i, (s, t) in enumerate(examples):
        input_ids[i, : len(s)] = torch.tensor(s)
        labels[i, : len(t)] = torch.tensor(t)
    decoder_input_ids = torch.cat([torch.full((len(examples), 1), PAD), labels[:, :-1].clamp(min=PAD)], dim=1)
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": (input_ids != PAD).long().to(device),
        "decoder_input_ids": decoder_input_ids.to(device),
        "labels": labels.to(device),
    }


# --- one step ----------------------------------------------------------------------------


def exit_losses(
    model: T5ForConditionalGeneration,
    batch: dict[str, torch.Tensor],
    drop_rates: Sequence[float],
    early: bool = True,
) -> list[torch.Tensor]:
    """Cross-entropy of every decoder exit 1..L on ``batch`` (last = the full model);
    with ``early=False`` only the full model's, skipping the extra head projections."""
    with decoder_taps(model, drop_rates) as hidden:
        out = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            decoder_input_ids=batch["decoder_input_ids"],
            use_cache=False,
        )
    labels = batch["labels"].reshape(-1)
    logits = [exit_logits(model, h) for h in hidden[:-1]] * early + [out.logits]
    return [F.cross_entropy(lg.float().reshape(-1, lg.shape[-1]), labels, ignore_index=IGNORE) for lg in logits]


@torch.no_grad()
def validate(model: T5ForConditionalGeneration, batches: Sequence[dict[str, torch.Tensor]]) -> list[float]:
    model.eval()
    totals = [0.0] * model.config.num_decoder_layers
    for batch in batches:
        for k, loss in enumerate(exit_losses(model, batch, [0.0] * len(totals))):
            totals[k] += loss.item() / len(batches)
    model.train()
    return totals


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, progress))))


# --- checkpoints -------------------------------------------------------------------------


def save(model: T5ForConditionalGeneration, tokenizer: Tokenizer, optimizer: torch.optim.Optimizer,
         step: int, config: TrainConfig) -> None:  # fmt: skip
    out = config.out
    # Greedy decoding of this small model can fall into loops where a source token recurs
    # (the copy circuit jumps to its other occurrence); banning repeated trigrams stops
    # them: JFLEG dev (first 200) GLEU 0.245 -> 0.294 at step 7,500. Chosen on JFLEG dev
    # (3 beat 4), the only evaluation set here. The package keeps it as its default.
    model.generation_config.no_repeat_ngram_size = NO_REPEAT_NGRAM
    # Greedy search never considers leaving the sentence alone; scoring the unchanged
    # input too and keeping it when the model prefers it (runtime/rerank.py) lifts JFLEG
    # dev GLEU 0.379 -> 0.389 at step 19,000 (fp32) with no threshold to tune.
    model.generation_config.rerank_source = True
    # Its own edits score below leaving a sentence alone (GLEU); a bonus for the source's
    # next token (runtime/source_align.py) makes it edit only where it is surer: JFLEG dev,
    # int8 package with the rerank, GLEU 0.3897 / 0.3906 / 0.3874 at copy bias 0 / 1 / 2
    # (python -m bench.speculative_variants default --copy-bias 0,1,2 --rerank-source)
    model.generation_config.copy_bias = COPY_BIAS
    # An edit copies most of its input: drafting from it gives the same greedy output in
    # fewer decoder passes (draft="auto", the CLI's default; README speculative table)
    model.generation_config.draft = "input"
    model.save_pretrained(out)
    tokenizer.save(str(out / "tokenizer.json"))
    exits = {
        "exit_trained": config.exit_loss,
        "shared_head": True,
        "exits": list(range(1, config.shape.decoder_layers + 1)),
    }
    (out / "edgeseq_exits.json").write_text(json.dumps(exits, indent=2) + "\n")
    state = {
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "recipe": _recipe(config),
    }
    tmp = out / "train_state.pt.tmp"
    torch.save(state, tmp)
    os.replace(tmp, out / "train_state.pt")  # a crash mid-save never leaves a torn state


def _recipe(config: TrainConfig) -> dict[str, object]:
    """The settings a resumed run must share with the run that saved the state."""
    skip = {"out", "steps", "warmup_steps", "device", "save_every", "eval_every"}
    recipe = {k: v for k, v in dataclasses.asdict(config).items() if k not in skip}
    recipe["data"] = {k: v for k, v in recipe["data"].items() if not k.endswith("_path")}  # same text, any folder
    return {k: str(v) for k, v in recipe.items()}


def load_state(model: T5ForConditionalGeneration, optimizer: torch.optim.Optimizer, config: TrainConfig) -> int:
    """Restore ``train_state.pt`` from ``config.out`` if present; returns the step to start at."""
    path = config.out / "train_state.pt"
    if not path.is_file():
        return 0
    state = torch.load(path, map_location=config.device, weights_only=False)
    saved, now = state["recipe"], _recipe(config)
    differ = sorted(k for k in now if saved.get(k) != now[k])
    if differ:
        raise ValueError(f"{path} was trained with different {', '.join(differ)}; use another --out")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"])


# --- main loop ---------------------------------------------------------------------------


def prepare_data(config: TrainConfig) -> tuple[Tokenizer, list[Example], list[dict[str, torch.Tensor]]]:
    """Tokenizer (reused from ``config.out`` when resuming), encoded training pairs and
    validation batches (256 pairs: enough to rank exits, quick to run)."""
    train_pairs, valid_pairs = build_datasets(config.data)
    tok_path = config.out / "tokenizer.json"
    if tok_path.is_file():
        tokenizer = Tokenizer.from_file(str(tok_path))
    else:
        tokenizer = train_tokenizer(sorted({p.target for p in train_pairs}), config.shape.vocab_size)
    train_set = encode_pairs(tokenizer, train_pairs, config.max_tokens)
    valid_set = encode_pairs(tokenizer, valid_pairs, config.max_tokens)[:256]
    valid_batches = [collate(valid_set[i : i + 64], config.device) for i in range(0, len(valid_set), 64)]
    return tokenizer, train_set, valid_batches


def make_optimizer(model: T5ForConditionalGeneration, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; norms and other vectors are not decayed."""
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.98), eps=1e-8)


def train(config: TrainConfig) -> None:
    config.out.mkdir(parents=True, exist_ok=True)
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    tokenizer, train_set, valid_batches = prepare_data(config)
    model = build_model(config.shape).to(config.device)
    optimizer = make_optimizer(model, config)
    start = load_state(model, optimizer, config)
    layers = config.shape.decoder_layers
    drop_rates = [config.layer_dropout * i / max(1, layers - 1) for i in range(layers)]
    weights = exit_weights(layers, config.exit_loss)
    n_params = sum(p.numel() for p in model.parameters())
    tqdm.write(f"{n_params / 1e6:.2f}M parameters, {len(train_set)} training pairs, starting at step {start}")

    per_epoch = math.ceil(len(train_set) / config.batch_size)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if config.device == "cuda" else contextlib.nullcontext()
    model.train()
    bar = tqdm(total=config.steps, initial=start, desc="train", dynamic_ncols=True)
    log = (config.out / "train_log.jsonl").open("a")
    t0 = time.perf_counter()
    batches, batches_epoch = [], -1
    for step in range(start, config.steps):
        epoch, index = divmod(step, per_epoch)
        if epoch != batches_epoch:
            batches, batches_epoch = epoch_batches(train_set, config.batch_size, config.seed, epoch), epoch
        ids = batches[index]
        batch = collate([train_set[i] for i in ids], config.device)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config)
        with autocast:
            losses = exit_losses(model, batch, drop_rates, early=config.exit_loss)
        loss = sum(w * l for w, l in zip(weights[-len(losses) :], losses))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1].item():.3f}", exit1=f"{losses[0].item():.3f}" if config.exit_loss else "-")
        done = step + 1
        if done % config.eval_every == 0 or done == config.steps:
            val = validate(model, valid_batches)
            record = {
                "step": done,
                "train_loss": [round(l.item(), 4) for l in losses],
                "valid_loss": [round(v, 4) for v in val],
                "seconds": round(time.perf_counter() - t0, 1),
            }
            log.write(json.dumps(record) + "\n")
            log.flush()
            tqdm.write(f"step {done}: valid loss per exit {[round(v, 3) for v in val]}")
        if done % config.save_every == 0 or done == config.steps:
            save(model, tokenizer, optimizer, done, config)
    bar.close()
    log.close()


def parse_args(argv: Sequence[str] | None = None) -> tuple[int | None, list[TrainConfig]]:
    """(torch CPU threads or None, one training configuration per schedule) from the
    command line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output directory (rerun to resume)")
    p.add_argument("--steps", default=str(TrainConfig.steps),
                   help="total steps; a comma list (4000,15000,22000) runs one schedule after "
                        "another on the same folder, each resuming where the last ended")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--no-exit-loss", action="store_true", help="train only the last exit (baseline)")
    p.add_argument("--shape", choices=sorted(SHAPES), default="small", help="model size")
    p.add_argument("--max-tokens", type=int, default=TrainConfig.max_tokens,
                   help="skip pairs with a longer side (shorter trains faster)")
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--lr", type=float, default=TrainConfig.lr)
    p.add_argument("--layer-dropout", type=float, default=TrainConfig.layer_dropout)
    p.add_argument("--seed", type=int, default=TrainConfig.seed)
    p.add_argument("--save-every", type=int, default=TrainConfig.save_every)
    p.add_argument("--eval-every", type=int, default=TrainConfig.eval_every)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--data-dir", type=Path, default=None, help="folder with the news text (default: shared/data/news)")
    a = p.parse_args(argv)
    data = DataConfig()
    if a.data_dir is not None:
        data = dataclasses.replace(
            data, train_path=a.data_dir / data.train_path.name, valid_path=a.data_dir / data.valid_path.name
        )
    try:
        stages = [int(n) for n in a.steps.split(",")]
    except ValueError:
        p.error(f"--steps: a number or a comma list of increasing numbers, got {a.steps!r}")
    if any(later <= earlier for earlier, later in zip(stages, stages[1:])):
        p.error(f"--steps: stages must increase, got {a.steps!r}")
    return a.threads, [TrainConfig(
        out=a.out, steps=steps, device=a.device, exit_loss=not a.no_exit_loss, batch_size=a.batch_size,
        lr=a.lr, layer_dropout=a.layer_dropout, seed=a.seed, save_every=a.save_every, eval_every=a.eval_every,
        warmup_steps=min(TrainConfig.warmup_steps, max(1, steps // 10)), data=data,
        shape=SHAPES[a.shape], max_tokens=a.max_tokens,
    ) for steps in stages]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    threads, stages = parse_args(argv)
    if threads:
        torch.set_num_threads(threads)
    if stages[0].device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but torch sees no CUDA device")
    for config in stages:  # each resumes from the folder, as a rerun of the command would
        train(config)


if __name__ == "__main__":
    main()
