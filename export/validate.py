"""Validate a written package against the PyTorch model it came from: the max logit
difference per graph (encoder: cross-attention K/V; decoder: logits of a whole prefix
at once and token by token through the cache), and for quantized packages the greedy
token agreement with PyTorch fp32."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeseq.errors import ExportValidationError
from .checkpoint import Checkpoint
from .weight_formats import Quant

# fp32 packages: max abs difference <= FP32_TOLERANCE * max(1, largest reference value),
# i.e. float32 rounding of a different summation order, never a real mismatch
FP32_TOLERANCE = 1e-3
SAMPLE_SEED = 1234


def _sample_inputs(ck: Checkpoint, batch: int = 2, length: int = 12):
    rng = np.random.default_rng(SAMPLE_SEED)
    specials = {ck.special.pad, ck.special.eos, ck.special.decoder_start}
    vocab = [t for t in range(min(ck.spec.vocab_size, 4000)) if t not in specials]
    ids = rng.choice(vocab, size=(batch, length)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1:, length * 2 // 3:] = 0  # a padded row
    ids[mask == 0] = ck.special.pad
    dec = rng.choice(vocab, size=(batch, 6)).astype(np.int64)
    dec[:, 0] = ck.special.decoder_start
    return ids, mask, dec


def _torch_reference(ck: Checkpoint, ids, mask, dec) -> tuple[np.ndarray, list[np.ndarray]]:
    import torch
    with torch.no_grad():
        out = ck.torch_model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                             decoder_input_ids=torch.from_numpy(dec), use_cache=True)
    cross = []
    for layer in out.past_key_values.cross_attention_cache.layers:
        cross.extend([layer.keys.numpy(), layer.values.numpy()])
    return out.logits.numpy(), cross


def _torch_greedy(ck: Checkpoint, ids, mask, new_tokens: int) -> list[list[int]]:
    """PyTorch fp32 greedy tokens with EOS suppressed, recomputing the prefix each step
    (no cache: transformers' cache breaks when encoder and decoder depths differ)."""
    import torch
    src, attn = torch.from_numpy(ids), torch.from_numpy(mask)
    prefix = torch.full((len(ids), 1), ck.special.decoder_start, dtype=torch.long)
    with torch.no_grad():
        encoded = ck.torch_model.get_encoder()(input_ids=src, attention_mask=attn)
        for _ in range(new_tokens):
            logits = ck.torch_model(encoder_outputs=encoded, attention_mask=attn,
                                    decoder_input_ids=prefix, use_cache=False).logits[:, -1]
            logits[:, ck.special.eos] = -float("inf")
            prefix = torch.cat([prefix, logits.argmax(-1, keepdim=True)], dim=1)
    return prefix[:, 1:].tolist()


def _greedy_agreement(ck: Checkpoint, engine, ids, mask, new_tokens: int = 16) -> float:
    """Mean fraction of PyTorch fp32 greedy tokens reproduced before the first mismatch."""
    ref = _torch_greedy(ck, ids, mask, new_tokens)
    rows = [r[m.astype(bool)].tolist() for r, m in zip(ids, mask)]
    ours = engine.generate(rows, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    scores = []
    for expected, got in zip(ref, ours):
        same = 0
        for a, b in zip(expected, got.token_ids):
            if a != b:
                break
            same += 1
        scores.append(same / len(expected))
    return float(np.mean(scores))


def graph_differences(runner, state, dec: np.ndarray, ref_logits: np.ndarray,
                      ref_cross: list[np.ndarray]) -> dict[str, Any]:
    """Max differences to PyTorch per graph: the encoder's cross K/V, the decoder's logits
    for a whole prefix in one pass and token by token through the cache."""
    cache = runner.new_cache(dec.shape[0], dec.shape[1])
    whole = runner.step(dec, state, cache)
    cache.truncate(0)
    stepped = np.concatenate([runner.step(dec[:, i:i + 1], state, cache)
                              for i in range(dec.shape[1])], axis=1)
    return {
        "encoder_max_abs_diff": float(max(np.abs(a - b).max() for a, b in zip(state.cross, ref_cross))),
        "decoder_max_abs_diff": float(np.abs(whole - ref_logits).max()),
        "decoder_cached_max_abs_diff": float(np.abs(stepped - ref_logits).max()),
        "reference_logit_scale": float(np.abs(ref_logits).max()),
        "reference_cross_scale": float(max(np.abs(c).max() for c in ref_cross)),
    }


def check_fp32(report: dict[str, Any], tolerance: float, what: str) -> None:
    """Add the tolerances to the report; raise when an fp32 package exceeds them."""
    report["decoder_tolerance"] = tolerance * max(1.0, report["reference_logit_scale"])
    report["encoder_tolerance"] = tolerance * max(1.0, report["reference_cross_scale"])
    worst = max(report["decoder_max_abs_diff"], report["decoder_cached_max_abs_diff"])
    if worst > report["decoder_tolerance"] or \
            report["encoder_max_abs_diff"] > report["encoder_tolerance"]:
        raise ExportValidationError(
            f"fp32 {what} differs from PyTorch beyond its tolerance: {report}; this is an "
            "exporter bug for this architecture, please report it")


def validate_package(ck: Checkpoint, package: Path, quant: Quant) -> dict[str, Any]:
    import edgeseq
    from edgeseq.runtime.engine import Engine

    ids, mask, dec = _sample_inputs(ck)
    ref_logits, ref_cross = _torch_reference(ck, ids, mask, dec)
    engine: Engine = edgeseq.load(str(package), threads=1)
    runner = engine.runner
    state = runner.encode(ids, mask)
    report = graph_differences(runner, state, dec, ref_logits, ref_cross)
    if quant == Quant.FP32:
        check_fp32(report, FP32_TOLERANCE, "package")
    else:
        report["greedy_agreement_with_fp32"] = _greedy_agreement(ck, engine, ids, mask)
    return report
