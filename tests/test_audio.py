"""WAV decoding, resampling and Whisper log-mel features (runtime/audio.py)."""

from __future__ import annotations

import importlib
import importlib.util
import io
import struct
import wave
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
AUDIO_DIR = ROOT.parent / "shared" / "data" / "audio"
SR = 16000


import edgeseq.runtime.audio as audio  # noqa: E402
AudioError = audio.AudioError


def _wav_bytes(frames: np.ndarray, rate: int, width: int = 2) -> bytes:
    """Integer PCM WAV via the standard library; frames [n] or [n, channels] in [-1, 1]."""
    frames = frames.reshape(len(frames), -1) if frames.ndim == 2 else frames[:, None]
    scale = 2 ** (8 * width - 1)
    ints = np.clip(np.round(frames * scale), -scale, scale - 1).astype(np.int64)
    if width == 1:
        raw = (ints + 128).astype(np.uint8).tobytes()
    else:
        raw = b"".join(int(v).to_bytes(width, "little", signed=True) for v in ints.ravel())
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(frames.shape[1])
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)
    return buf.getvalue()


def _riff(fmt_body: bytes, data: bytes, extra_chunks: bytes = b"") -> bytes:
    chunks = b"fmt " + struct.pack("<I", len(fmt_body)) + fmt_body + extra_chunks
    chunks += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def _fmt(tag: int, channels: int, rate: int, bits: int) -> bytes:
    block = channels * bits // 8
    return struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)


def _hf_features(samples: np.ndarray, n_mels: int) -> np.ndarray:
    """transformers' numpy WhisperFeatureExtractor path on one 30 s window."""
    transformers = pytest.importorskip("transformers")
    extractor = transformers.WhisperFeatureExtractor(feature_size=n_mels)
    window = np.zeros(audio.N_SAMPLES, np.float32)
    window[: min(len(samples), audio.N_SAMPLES)] = samples[: audio.N_SAMPLES]
    return extractor._np_extract_fbank_features(window[None], "cpu")[0]


# Measured: 1.2e-7 (one float32 ulp near 1) on the shared clips and the synthetic signals.
MAX_MEL_DIFF = 1e-6


def _shared_wavs() -> list[Path]:
    wavs = sorted(AUDIO_DIR.glob("*.wav"))
    if not wavs:
        pytest.skip(f"no shared WAV files in {AUDIO_DIR}")
    return wavs


@pytest.mark.parametrize("n_mels", [80, 128])
def test_mel_matches_hf_on_shared_speech(n_mels: int) -> None:
    for path in _shared_wavs():
        samples = audio.load_audio(path)
        ours = audio.log_mel_spectrogram(samples, n_mels)
        assert ours.shape == (n_mels, 3000) and ours.dtype == np.float32
        diff = float(np.abs(ours - _hf_features(samples, n_mels)).max())
        assert diff <= MAX_MEL_DIFF, f"{path.name}: max |ours - HF| = {diff:.2e}"
        if importlib.util.find_spec("torch") is not None:
            # HF's default path with torch: float32 STFT, measured 1.1e-5 to 2.4e-5 here
            transformers = importlib.import_module("transformers")
            extractor = transformers.WhisperFeatureExtractor(feature_size=n_mels)
            torch_ref = extractor(samples[: audio.N_SAMPLES], sampling_rate=SR,
                                  return_tensors="np").input_features[0]
            assert float(np.abs(ours - torch_ref).max()) <= 1e-4


def test_mel_matches_hf_on_synthetic_signals() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(audio.N_SAMPLES) / SR
    signals = {
        "silence": np.zeros(SR, np.float32),
        "sine_440": 0.5 * np.sin(2 * np.pi * 440 * t[: 5 * SR]),
        "chirp": 0.3 * np.sin(2 * np.pi * (100 + 3900 * t / 30) * t),
        "noise_over_30s": 0.1 * rng.standard_normal(audio.N_SAMPLES + 12345),
        "click": np.eye(1, 401, 200).ravel(),
    }
    for name, signal in signals.items():
        signal = signal.astype(np.float32)
        diff = float(np.abs(audio.log_mel_spectrogram(signal) - _hf_features(signal, 80)).max())
        assert diff <= MAX_MEL_DIFF, f"{name}: max |ours - HF| = {diff:.2e}"
    silent = audio.log_mel_spectrogram(np.zeros(10, np.float32))
    np.testing.assert_array_equal(silent, np.full((80, 3000), -1.5, np.float32))  # (-10 + 4) / 4


def test_mel_filters_match_transformers() -> None:
    audio_utils = pytest.importorskip("transformers.audio_utils")
    for n_mels in (80, 128):
        ref = audio_utils.mel_filter_bank(
            num_frequency_bins=201, num_mel_filters=n_mels, min_frequency=0.0,
            max_frequency=8000.0, sampling_rate=SR, norm="slaney", mel_scale="slaney")
        np.testing.assert_allclose(audio.mel_filters(n_mels), ref.T, rtol=0, atol=1e-12)


def test_wav_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    mono = rng.uniform(-0.9, 0.9, 1000)
    path = tmp_path / "mono.wav"
    path.write_bytes(_wav_bytes(mono, SR))
    samples, rate = audio.read_wav(path)
    expected = np.round(mono * 32768).astype(np.int16) / np.float32(32768)
    assert rate == SR and samples.dtype == np.float32
    np.testing.assert_array_equal(samples, expected)
    np.testing.assert_array_equal(audio.load_audio(path), expected)  # 16 kHz: untouched
    np.testing.assert_array_equal(audio.read_wav(path.read_bytes())[0], expected)

    stereo = np.stack([mono, -0.5 * mono], axis=1)
    samples, _ = audio.read_wav(_wav_bytes(stereo, SR))
    left, right = (np.round(stereo * 32768).astype(np.int16) / 32768).T
    np.testing.assert_allclose(samples, (left + right) / 2, atol=1e-7)

    for width in (3, 4):  # 24- and 32-bit integer PCM
        samples, _ = audio.read_wav(_wav_bytes(mono, SR, width))
        np.testing.assert_allclose(samples, mono, atol=2.0 ** (1 - 8 * width) + 1e-7)
    floats = rng.uniform(-1, 1, (300, 3)).astype("<f4")
    for tag, fmt in ((3, _fmt(3, 3, 22050, 32)),  # IEEE float, and the same as extensible:
                     (0xFFFE, _fmt(0xFFFE, 3, 22050, 32) + struct.pack("<HHI", 22, 32, 0)
                      + struct.pack("<H", 3) + bytes(14))):
        samples, rate = audio.read_wav(_riff(fmt, floats.tobytes(), b"LIST\x03\x00\x00\x00abc\x00"))
        assert rate == 22050, tag
        np.testing.assert_allclose(samples, floats.mean(axis=1), atol=1e-7)


def test_44k_wav_is_resampled_to_16k(tmp_path: Path) -> None:
    rate, seconds, hz = 44100, 2, 1000.0
    tone = 0.5 * np.sin(2 * np.pi * hz * np.arange(rate * seconds) / rate)
    path = tmp_path / "tone44k.wav"
    path.write_bytes(_wav_bytes(np.stack([tone, tone], axis=1), rate))
    samples = audio.load_audio(path)
    assert samples.shape == (SR * seconds,) and samples.dtype == np.float32
    want = 0.5 * np.sin(2 * np.pi * hz * np.arange(len(samples)) / SR)
    inner = slice(SR // 10, -SR // 10)  # away from the zero-padded ends
    assert np.abs(samples - want)[inner].max() < 1e-4


@pytest.mark.parametrize("rates", [(44100, 16000), (48000, 16000), (8000, 16000), (22050, 16000),
                                   (16001, 16000), (16000, 44100)])
def test_resample_accuracy(rates: tuple[int, int]) -> None:
    src, dst = rates
    t_in = np.arange(2 * src) / src
    for hz, bound in ((1000.0, 2e-5), (3500.0, 1e-4)):
        out = audio.resample(np.sin(2 * np.pi * hz * t_in), src, dst)
        assert len(out) == -(-2 * src * dst // src)
        want = np.sin(2 * np.pi * hz * np.arange(len(out)) / dst)
        inner = slice(dst // 10, -dst // 10)
        assert np.abs(out - want)[inner].max() < bound, (rates, hz)
    dc = audio.resample(np.full(2 * src, 0.25), src, dst)
    assert np.abs(dc[dst // 10 : -dst // 10] - 0.25).max() < 1e-5


@pytest.mark.parametrize("down", [2, 3, 6])
def test_decimating_by_an_integer_is_the_generic_filter(down: int) -> None:
    """48, 32, 96 kHz -> 16 kHz take the decimator: the same filter and alignment as the
    polyphase path, in float32 (lengths across its blocks and shorter than its taps)."""
    rng = np.random.default_rng(down)
    for n in (1, 2, 7, 100, 3001, down * audio._DECIMATE_BLOCK + 5):
        x = rng.uniform(-1, 1, n)
        fast, generic = audio.resample(x, 16000 * down, 16000), audio._resample_polyphase(x, 1, down)
        assert fast.dtype == np.float32 and fast.shape == generic.shape == (-(-n // down),)
        np.testing.assert_allclose(fast, generic, atol=2e-6)


def test_resample_removes_aliases_and_handles_tiny_inputs() -> None:
    t = np.arange(44100) / 44100
    aliased = audio.resample(np.sin(2 * np.pi * 9000 * t), 44100, SR)  # above 8 kHz Nyquist
    assert np.sqrt(np.mean(aliased[1600:-1600] ** 2)) < 1e-3
    t = np.arange(48000) / 48000
    aliased = audio.resample(np.sin(2 * np.pi * 9000 * t), 48000, SR)  # the decimator's too
    assert np.sqrt(np.mean(aliased[1600:-1600] ** 2)) < 1e-3
    for n in range(0, 5):
        for src in (8000, 44100, 48000):
            assert len(audio.resample(np.ones(n), src, SR)) == -(-n * SR // src)
    with pytest.raises(AudioError, match=r"source sample rate must be in 1000\.\.768000 Hz"):
        audio.resample(np.ones(3), 0, SR)


def test_load_audio_from_arrays() -> None:
    x = np.random.default_rng(2).uniform(-1, 1, (4800, 2)).astype(np.float32)
    assert audio.load_audio(x, source_rate=48000).shape == (1600,)
    np.testing.assert_allclose(audio.load_audio(x), x.mean(axis=1), atol=1e-7)
    with pytest.raises(AudioError, match="NaN"):
        audio.load_audio(np.array([0.0, np.nan], np.float32))
    with pytest.raises(AudioError, match="shape"):
        audio.load_audio(np.zeros((2, 2, 2), np.float32))


def test_iter_windows_cuts_consecutive_30s_windows() -> None:
    samples = np.random.default_rng(3).uniform(-0.5, 0.5, 75 * SR).astype(np.float32)
    windows = list(audio.iter_windows(samples))
    assert [start for start, _ in windows] == [0.0, 30.0, 60.0]
    for start, mel in windows:
        first = int(start * SR)
        np.testing.assert_array_equal(
            mel, audio.log_mel_spectrogram(samples[first : first + audio.N_SAMPLES]))
    assert list(audio.iter_windows(np.zeros(0, np.float32))) == []
    with pytest.raises(ValueError, match="80 or 128"):
        audio.log_mel_spectrogram(samples[:10], n_mels=64)


def _bad_wavs() -> dict[str, tuple[bytes, str]]:
    good = _wav_bytes(np.zeros(100), SR)
    fmt16 = _fmt(1, 1, SR, 16)
    return {
        "empty": (b"", "file is empty"),
        "text": (b"hello, this is not audio at all", "not a WAV file"),
        "mp3": (b"ID3\x04\x00" + bytes(100), "not a WAV file"),
        "8-bit": (_wav_bytes(np.zeros(100), SR, width=1), "8-bit PCM WAV is not supported"),
        "header cut": (good[:30], "corrupt or truncated WAV"),
        "fmt too short": (_riff(fmt16[:12], bytes(4)), "fmt chunk is 12 bytes"),
        "data cut": (good[:-50], "truncated WAV: data chunk declares 200 bytes"),
        "zero-length data": (_wav_bytes(np.zeros(0), SR), "zero-length data chunk"),
        "mu-law": (_riff(_fmt(7, 1, 8000, 8), bytes(10)), "unsupported WAV compression mu-law"),
        "ADPCM": (_riff(_fmt(2, 1, 8000, 4), bytes(10)), "compression Microsoft ADPCM"),
        "12-bit": (_riff(_fmt(1, 1, SR, 12), bytes(10)), "unsupported 12-bit PCM"),
        "zero channels": (_riff(struct.pack("<HHIIHH", 1, 0, SR, 0, 0, 16), bytes(4)), "0 chann"),
        "block align": (_riff(struct.pack("<HHIIHH", 1, 2, SR, 0, 2, 16), bytes(4)), "block align"),
        "half frame": (_riff(fmt16, bytes(5)), "not a whole number of 2-byte frames"),
        "data first": (b"RIFF\0\0\0\0WAVEdata\x02\0\0\0\0\0", "data chunk before"),
        "no data": (good[:36], "no data chunk"),
        "big-endian": (b"RIFX" + good[4:], "RIFX WAV variant is not supported"),
    }


@pytest.mark.parametrize("case", list(_bad_wavs()))
def test_bad_audio_raises_audio_error(case: str, tmp_path: Path) -> None:
    data, message = _bad_wavs()[case]
    path = tmp_path / f"{case}.wav"
    path.write_bytes(data)
    for source in (path, data):
        with pytest.raises(AudioError, match=message) as info:
            audio.load_audio(source)
        assert isinstance(info.value, ValueError)
    if case in ("text", "mp3", "8-bit", "mu-law", "ADPCM", "12-bit", "big-endian"):
        assert "ffmpeg" in str(info.value)  # unsupported input: the message says how to convert
