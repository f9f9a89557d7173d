"""Train draft exits for a Whisper package whose own weights stay frozen.

Exit k drafts with the first k decoder layers, the shared final norm, and a head of its
own: the tied embedding rows of a frequent-token draft vocabulary, through a learned
d x d map (a linear "tuned lens": W_k = E_S (I + A_k), folded into one [N, d] matrix).
Untrained, an early Whisper layer through the model's head almost never agrees with the
full model; the map fixes that. The short draft vocabulary (FR-Spec) matters as much: a
decoding step reads every weight once, and Whisper base's 51,865-row head is more than
half of the decoder's weight bytes, so a full-vocabulary draft head would cost as much as
the layers it skips. Drafts stay proposals: verification keeps the output identical.

Targets are the full model's own greedy tokens (collect.py); loss is cross-entropy over
the draft vocabulary (tokens outside it cannot be drafted and are left out).

    python -m models.whisper_exits.train --data models/whisper_exits/.cache/base-int8 \
        --checkpoint bench/.cache/transcribe/base-ct2 --exits 2,3,4 --out models/whisper_exits/base
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from export.exit_heads import DEFAULT_HEADS_FILE, EXITS_FILE


def load_shards(data: Path, exits: list[int]) -> dict[str, np.ndarray]:
    shards = sorted(data.glob("shard-*.npz"))
    if not shards:
        raise SystemExit(f"no shard-*.npz in {data}: run models.whisper_exits.collect first")
    parts: dict[str, list[np.ndarray]] = {}
    for path in shards:
        with np.load(path) as shard:
            for key in ["targets", *(f"h{k}" for k in exits)]:
                parts.setdefault(key, []).append(shard[key])
            parts.setdefault("shard", []).append(np.full(len(shard["targets"]), len(parts["shard"])))
    return {k: np.concatenate(v) for k, v in parts.items()}


def draft_vocabulary(targets: np.ndarray, size: int, always: list[int],
                     text_tokens: int) -> np.ndarray:
    """`size` token ids, sorted: `always` (end of text), then the tokens the teacher used
    most, then the lowest unused ids below `text_tokens` (byte-level BPE ids follow merge
    order, a proxy for frequency where the data is silent)."""
    counts = np.bincount(targets, minlength=text_tokens)
    chosen = dict.fromkeys(always)  # insertion-ordered set
    for token in np.argsort(-counts, kind="stable"):
        if counts[token] == 0 or len(chosen) >= size:
            break
        chosen.setdefault(int(token))
    for token in range(text_tokens):
        if len(chosen) >= size:
            break
        chosen.setdefault(token)
    return np.array(sorted(chosen), np.int64)


def train_exit(torch, hidden, targets, norm_w, norm_b, rows, steps: int, batch: int,
               lr: float, seed: int):
    """Returns the learned map A [d, d] for one exit (W = rows @ (I + A))."""
    gen = torch.Generator().manual_seed(seed)
    d = rows.shape[1]
    a = torch.zeros(d, d, requires_grad=True)
    opt = torch.optim.Adam([a], lr=lr)
    x_all = torch.nn.functional.layer_norm(torch.from_numpy(hidden.astype(np.float32)), (d,),
                                           norm_w, norm_b, 1e-5)
    y_all = torch.from_numpy(targets)
    for step in range(steps):
        pick = torch.randint(0, len(y_all), (batch,), generator=gen)
        x, y = x_all[pick], y_all[pick]
        logits = (x + x @ a.T) @ rows.T
        loss = torch.nn.functional.cross_entropy(logits, y, ignore_index=-1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        for group in opt.param_groups:  # cosine decay
            group["lr"] = lr * 0.5 * (1 + np.cos(np.pi * (step + 1) / steps))
    return a.detach()


def agreement(torch, hidden, targets, norm_w, norm_b, rows, a) -> float:
    """Fraction of positions where the draft head's argmax is the full model's token."""
    d = rows.shape[1]
    x = torch.nn.functional.layer_norm(torch.from_numpy(hidden.astype(np.float32)), (d,),
                                       norm_w, norm_b, 1e-5)
    with torch.no_grad():
        picks = ((x + x @ a.T) @ rows.T).argmax(-1).numpy()
    return float((picks == targets).mean())


def main(argv: list[str] | None = None) -> int:
    import torch
    from safetensors.numpy import save_file
    from export.whisper import load_whisper
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--checkpoint", required=True, help="the Whisper weights the package came from")
    ap.add_argument("--exits", default="2,3,4")
    ap.add_argument("--vocab", type=int, default=8192, help="draft vocabulary size")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=2048)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--valid-shards", type=int, default=1, help="last shards held out")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    exits = [int(e) for e in a.exits.split(",")]
    ck = load_whisper(a.checkpoint)
    if max(exits) >= ck.spec.decoder_layers:
        raise SystemExit(f"exits must be below the last decoder layer ({ck.spec.decoder_layers})")
    data = load_shards(a.data, exits)
    valid = data["shard"] >= data["shard"].max() + 1 - a.valid_shards
    eot = int(ck.special.eos)
    vocab = draft_vocabulary(data["targets"][~valid], a.vocab, [eot], text_tokens=eot)
    index = np.full(ck.spec.vocab_size, -1, np.int64)
    index[vocab] = np.arange(len(vocab))
    local = index[data["targets"]]  # -1: outside the draft vocabulary
    embed = ck.weights["embed.tokens"].astype(np.float32)
    rows = torch.from_numpy(embed[vocab])
    norm_w = torch.from_numpy(ck.weights["dec.final_norm.w"].astype(np.float32))
    norm_b = torch.from_numpy(ck.weights["dec.final_norm.b"].astype(np.float32))
    report = {"tokens": int((~valid).sum()), "valid_tokens": int(valid.sum()),
              "vocab": len(vocab), "valid_coverage": float((local[valid] >= 0).mean()), "exits": {}}
    heads = {}
    for k in exits:
        tick = time.time()
        h = data[f"h{k}"]
        zero = torch.zeros(rows.shape[1], rows.shape[1])
        before = agreement(torch, h[valid], local[valid], norm_w, norm_b, rows, zero)
        amap = train_exit(torch, h[~valid], local[~valid], norm_w, norm_b, rows, a.steps,
                          a.batch, a.lr, seed=k)
        after = agreement(torch, h[valid], local[valid], norm_w, norm_b, rows, amap)
        train_fit = agreement(torch, h[~valid][:20000], local[~valid][:20000], norm_w, norm_b, rows, amap)
        report["exits"][k] = {"valid_agreement_untrained": before, "valid_agreement": after,
                              "train_agreement": train_fit, "seconds": time.time() - tick}
        print(f"exit {k}: held-out agreement {before:.3f} untrained -> {after:.3f} "
              f"(train {train_fit:.3f})", flush=True)
        weight = (rows + rows @ amap).numpy()
        heads[f"exit_heads.{k}.weight"] = np.ascontiguousarray(weight, np.float32)
        heads[f"exit_heads.{k}.vocab"] = vocab
    a.out.mkdir(parents=True, exist_ok=True)
    save_file(heads, str(a.out / DEFAULT_HEADS_FILE))
    (a.out / EXITS_FILE).write_text(json.dumps(
        {"exits": [*exits, ck.spec.decoder_layers], "shared_head": False, "exit_trained": False,
         "draft_only": True, "heads_file": DEFAULT_HEADS_FILE}, indent=1) + "\n")
    (a.out / "train_report.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "exits"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
