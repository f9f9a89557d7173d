"""The Whisper draft-exit recipe (models/whisper_exits): its draft vocabulary, and a lens
that learns what an exit's hidden state says about the full model's next token."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from models.whisper_exits.train import agreement, draft_vocabulary, train_exit  # noqa: E402


def test_the_draft_vocabulary_is_end_of_text_then_the_teachers_tokens_then_low_ids():
    targets = np.array([7, 7, 7, 3, 3, 9, 20])
    vocab = draft_vocabulary(targets, size=6, always=[20], text_tokens=20)
    assert vocab.tolist() == [0, 1, 3, 7, 9, 20]  # 20 (EOT), 7, 3, 9 by count, then 0, 1
    assert draft_vocabulary(targets, size=2, always=[20], text_tokens=20).tolist() == [7, 20]


def test_the_lens_learns_a_map_the_shared_head_cannot_read():
    rng = np.random.default_rng(0)
    d, vocab, n = 16, 40, 6000
    rows = torch.from_numpy(rng.standard_normal((vocab, d)).astype(np.float32))
    turn = np.linalg.qr(rng.standard_normal((d, d)))[0].astype(np.float32)  # a rotation
    hidden = rng.standard_normal((n, d)).astype(np.float32)
    ones, zeros = torch.ones(d), torch.zeros(d)
    normed = torch.nn.functional.layer_norm(torch.from_numpy(hidden), (d,), ones, zeros, 1e-5)
    targets = ((normed @ torch.from_numpy(turn).T) @ rows.T).argmax(-1).numpy()  # the "full model"
    train, held = slice(0, 5000), slice(5000, None)
    untrained = agreement(torch, hidden[held], targets[held], ones, zeros, rows, torch.zeros(d, d))
    lens = train_exit(torch, hidden[train], targets[train], ones, zeros, rows, steps=800,
                      batch=512, lr=1e-2, seed=0)
    learned = agreement(torch, hidden[held], targets[held], ones, zeros, rows, lens)
    assert untrained < 0.3 and learned > 0.9


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_synthetic_speech_is_16khz_audio_of_the_text():
    import random
    from models.whisper_exits.speech import require_espeak, speak
    samples = speak("The bank kept its rates unchanged.", random.Random(0), require_espeak())
    assert samples.dtype == np.float32 and 16000 < len(samples) < 16000 * 6
    assert np.abs(samples).max() > 0.05
