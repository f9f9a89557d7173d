"""Synthetic English speech for training Whisper's draft exits: news sentences spoken by
espeak-ng (Debian package `espeak-ng`) in varied voices and rates. The exits only need
encoder states that look like speech and the full model's own transcripts of them; the
real recordings in ../shared/data/audio are never trained on (they are the benchmark)."""
from __future__ import annotations

import random
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from runtime.audio import SAMPLE_RATE, load_audio

VOICES = ["en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc"]
VARIANTS = ["", "+m1", "+m3", "+f1", "+f2", "+f4"]


def require_espeak() -> str:
    found = shutil.which("espeak-ng")
    if not found:
        raise SystemExit("espeak-ng is not installed (apt-get install espeak-ng)")
    return found


def speak(text: str, rng: random.Random, espeak: str) -> np.ndarray:
    """One utterance of `text` as float32 samples at 16 kHz."""
    voice = rng.choice(VOICES) + rng.choice(VARIANTS)
    rate = str(rng.randint(135, 195))
    with tempfile.NamedTemporaryFile(suffix=".wav") as wav:
        subprocess.run([espeak, "-v", voice, "-s", rate, "-w", wav.name, text], check=True,
                       capture_output=True, timeout=60)
        samples = load_audio(wav.name)
    return samples[:SAMPLE_RATE * 30]  # one Whisper window


def utterances(sentences: list[str], per_clip: int, seed: int):
    """Yields (text, samples): `per_clip` consecutive sentences per utterance."""
    espeak = require_espeak()
    rng = random.Random(seed)
    for start in range(0, len(sentences) - per_clip + 1, per_clip):
        text = " ".join(sentences[start:start + per_clip])
        yield text, speak(text, rng, espeak)


def read_sentences(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if 20 <= len(line.strip()) <= 300]
