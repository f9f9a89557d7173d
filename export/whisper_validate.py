"""Validate a Whisper package against transformers' PyTorch Whisper on the same weights
(for CTranslate2 sources, rebuilt from the converted state dict): the cross-attention
K/V the encoder emits, decoder logits for the whole prompt + text at once and token by
token through the cache, and for quantized packages the greedy token agreement."""
from __future__ import annotations

import contextlib
import importlib
from pathlib import Path
from typing import Any

import numpy as np


from .validate import check_fp32, graph_differences
from .weight_formats import Quant

# fp32 packages: max abs difference <= FP32_TOLERANCE * max(1, largest reference value)
# (measured on tiny.en: 1.1e-5 relative for the cross K/V, 1e-6 for the logits)
FP32_TOLERANCE = 1e-4
GREEDY_TOKENS = 24
SAMPLE_RATE = 16000


def torch_whisper(ck) -> Any:
    """The checkpoint as WhisperForConditionalGeneration (float32, eval mode)."""
    if ck.torch_model is not None:
        return ck.torch_model
    import torch
    from transformers import WhisperForConditionalGeneration
    init = importlib.import_module("transformers.initialization")
    no_init = getattr(init, "no_init_weights", contextlib.nullcontext)  # skip random init
    with no_init():
        model = WhisperForConditionalGeneration(ck.hf_config)
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in ck.hf_state.items()}
    model.load_state_dict(state, strict=True)
    ck.torch_model = model.eval()
    return ck.torch_model


def synthetic_audio(seconds: float = 6.0, seed: int = 1234) -> np.ndarray:
    """Deterministic speech-like test audio: a gliding harmonic tone with syllable-rate
    amplitude bursts and a little noise, float32 at 16 kHz."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pitch = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 3.1 * t), 0, None) ** 2
    return (0.2 * voice * envelope + 0.005 * rng.standard_normal(t.size)).astype(np.float32)


def validation_features(n_mels: int, audio: str | Path | None) -> np.ndarray:
    """float32 [1, n_mels, 3000]: the first 30 s of `audio`, or the synthetic clip."""
    from edgeseq.runtime.audio import load_audio, log_mel_spectrogram
    samples = load_audio(audio) if audio is not None else synthetic_audio()
    return log_mel_spectrogram(samples, n_mels)[None]


def prompt_tokens(whisper: dict[str, Any]) -> list[int]:
    """<|startoftranscript|> [<|en|> <|transcribe|>] <|notimestamps|>."""
    prompt = [whisper["sot"]]
    if whisper["is_multilingual"]:
        languages = whisper["languages"]
        prompt += [languages.get("en", next(iter(languages.values()))), whisper["transcribe"]]
    return prompt + [whisper["no_timestamps"]]


def _torch_reference(model, mel: np.ndarray, dec: np.ndarray):
    import torch
    with torch.no_grad():
        out = model(input_features=torch.from_numpy(mel), decoder_input_ids=torch.from_numpy(dec),
                    use_cache=True)
    cross = []
    for layer in out.past_key_values.cross_attention_cache.layers:
        cross.extend([layer.keys.numpy(), layer.values.numpy()])
    return out.logits.numpy(), cross


def _torch_greedy(model, mel: np.ndarray, prompt: list[int], eot: int, n: int) -> list[int]:
    """n greedy tokens with <|endoftext|> masked, recomputing the whole prefix each step."""
    import torch
    ids = list(prompt)
    with torch.no_grad():
        encoded = model.model.encoder(torch.from_numpy(mel)).last_hidden_state
        for _ in range(n):
            logits = model(encoder_outputs=(encoded,), decoder_input_ids=torch.tensor([ids])).logits
            row = logits[0, -1].numpy().copy()
            row[eot] = -np.inf
            ids.append(int(row.argmax()))
    return ids[len(prompt):]


def _package_greedy(runner, state, prompt: list[int], eot: int, n: int) -> list[int]:
    cache = runner.new_cache(1, len(prompt) + n)
    logits = runner.step(np.array([prompt], np.int64), state, cache)[0, -1]
    out: list[int] = []
    for _ in range(n):
        row = logits.copy()
        row[eot] = -np.inf
        out.append(int(row.argmax()))
        logits = runner.step(np.array([[out[-1]]], np.int64), state, cache)[0, -1]
    return out


def _agreement(expected: list[int], got: list[int]) -> float:
    same = next((i for i, (a, b) in enumerate(zip(expected, got)) if a != b), len(expected))
    return same / len(expected)


def validate_whisper_package(ck, package: Path, quant: Quant,
                             audio: str | Path | None = None) -> dict[str, Any]:
    import edgeseq

    model = torch_whisper(ck)
    mel = validation_features(ck.spec.num_mel_bins, audio)
    prompt = prompt_tokens(ck.whisper)
    eot = ck.whisper["eot"]
    text = [t for t in range(1, eot) if t not in set(ck.whisper["suppress_tokens"])][:4]
    dec = np.array([prompt + text], np.int64)
    ref_logits, ref_cross = _torch_reference(model, mel, dec)
    runner = edgeseq.load(str(package), threads=2).runner
    state = runner.encode_features(mel)
    report: dict[str, Any] = graph_differences(runner, state, dec, ref_logits, ref_cross)
    report["features"] = str(audio) if audio is not None else "synthetic"
    if quant == Quant.FP32:
        check_fp32(report, FP32_TOLERANCE, "Whisper package")
    else:
        expected = _torch_greedy(model, mel, prompt, eot, GREEDY_TOKENS)
        got = _package_greedy(runner, state, prompt, eot, GREEDY_TOKENS)
        report["greedy_agreement_with_fp32"] = _agreement(expected, got)
        # the same positions teacher-forced with PyTorch's tokens: robust to one early flip
        forced = np.array([prompt + expected[:-1]], np.int64)
        logits = runner.step(forced, state, runner.new_cache(1, forced.shape[1]))[0, len(prompt) - 1:]
        logits[:, eot] = -np.inf
        report["teacher_forced_top1_agreement"] = float(np.mean(logits.argmax(-1) == expected))
    return report
