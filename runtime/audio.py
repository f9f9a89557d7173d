"""Audio input for Whisper: WAV decoding, resampling to 16 kHz and log-mel features.

numpy only (no torch, no scipy) so it runs wherever the onnxruntime runtime runs.
``log_mel_spectrogram`` reproduces Whisper's features: 25 ms periodic-Hann frames every
10 ms (n_fft 400, hop 160), power spectrum, Slaney-normalised mel filters (the same as
``librosa.filters.mel(sr=16000, n_fft=400, n_mels=...)``; CTranslate2 checkpoints do
not store them), log10 with a 1e-10 floor, an 8 dB dynamic-range floor below the
window's maximum, then ``(x + 4) / 4``.

Audio comes as a WAV file path, WAV bytes or a numpy array (``load_audio``). Arrays are
float samples in [-1, 1] or int16 / int32 PCM (scaled as WAV files of those formats),
shaped [n], [n, channels] or [channels, n] (the channel axis is the short one, at most
MAX_CHANNELS long). Sample rates are whole numbers of Hz in MIN_SAMPLE_RATE..MAX_SAMPLE_RATE
(a whole float such as 22050.0 is taken; 44100.5, a bool or a string is refused).
"""

from __future__ import annotations

import math
import numbers
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from edgeseq.errors import AudioError

__all__ = [
    "AudioError", "HOP_LENGTH", "MAX_CHANNELS", "MAX_SAMPLE_RATE", "MIN_SAMPLE_RATE",
    "N_FFT", "N_FRAMES", "N_SAMPLES", "SAMPLE_RATE",
    "iter_windows", "load_audio", "log_mel_frames", "log_mel_spectrogram", "mel_filters",
    "read_wav", "resample",
]

SAMPLE_RATE = 16000  # Whisper's input rate, Hz
N_FFT = 400  # 25 ms analysis window
HOP_LENGTH = 160  # 10 ms hop
CHUNK_SECONDS = 30  # Whisper's encoder always sees exactly 30 s
N_SAMPLES = CHUNK_SECONDS * SAMPLE_RATE  # 480000
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 mel frames per window
_FFT_BLOCK = 4096  # frames per FFT block (_log_mel): bounds memory on long recordings
# Below 1 kHz little of the speech band survives; above 768 kHz no recorder writes, and the
# resampler's filter grows with the rate (a 0xFFFFFFFF header rate asked for 410 GiB).
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1_000, 768_000
MAX_CHANNELS = 8  # an array axis this short holds channels; the longer one is time

_FORMAT_NAMES = {
    0x0001: "PCM", 0x0002: "Microsoft ADPCM", 0x0003: "IEEE float", 0x0006: "A-law",
    0x0007: "mu-law", 0x0011: "IMA ADPCM", 0x0055: "MPEG layer 3", 0xFFFE: "extensible",
}
_PCM, _FLOAT, _EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
_STREAMED = 0xFFFFFFFF  # the size a writer that cannot seek back (a pipe) leaves in place
_CONVERT_HINT = "convert it with e.g. `ffmpeg -i INPUT -ac 1 -ar 16000 -c:a pcm_s16le OUT.wav`"

# Resampler: Kaiser-windowed sinc, cut off at 97% of the lower Nyquist frequency with
# beta 9 (ffmpeg's swresample defaults, which openai-whisper gets through ffmpeg), and
# twice swresample's length for a flatter passband up to ~7 kHz at 16 kHz.
_RESAMPLE_ZERO_CROSSINGS = 32
_RESAMPLE_CUTOFF = 0.97
_RESAMPLE_KAISER_BETA = 9.0
_RESAMPLE_BLOCK = 8192  # output rows per matrix-vector product (bounds memory)
# The filter has 64 taps per unit of the larger ratio term, built in float64 arrays (about
# 2.5 kB per unit): every real rate (8k-768k, 44.1k family included) stays below 1,000;
# a rate sharing almost no factor with 16 kHz (767,999 Hz: 4 GB, 17 s for 2 s of audio)
# is refused rather than run
_MAX_RATIO_TERM = 50_000
# outputs per block of the decimator's products: its [taps / down, block] float32 partial
# sums (~4 MB at 48 kHz) stay in cache (bench/resample.py: 8192 to 32768 alike, 131072 3x slower)
_DECIMATE_BLOCK = 16384


def _check_rate(rate: object, what: str) -> int:
    """`rate` as an int of Hz within MIN_SAMPLE_RATE..MAX_SAMPLE_RATE. A whole float
    (22050.0, from arithmetic) is taken; a bool, a string or 44100.5 is not."""
    real = isinstance(rate, numbers.Real) and not isinstance(rate, (bool, np.bool_))
    if not real or not float(rate).is_integer():
        raise AudioError(f"{what} must be a whole number of Hz, got {rate!r} "
                         f"({type(rate).__name__})")
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(f"{what} must be in {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz, "
                         f"got {rate}")
    return int(rate)


@dataclass(frozen=True)
class _WavFormat:
    tag: int  # _PCM or _FLOAT after resolving WAVE_FORMAT_EXTENSIBLE
    channels: int
    sample_rate: int
    bits: int  # bits per sample as stored
    block_align: int  # bytes per frame (all channels)


# ---------------------------------------------------------------------------- WAV


def _parse_fmt(body: bytes, name: str) -> _WavFormat:
    if len(body) < 16:
        raise AudioError(f"{name}: corrupt WAV header: fmt chunk is {len(body)} bytes, need 16")
    tag, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", body[:16])
    if tag == _EXTENSIBLE:
        if len(body) < 40:
            raise AudioError(f"{name}: corrupt WAV header: extensible fmt chunk too short")
        tag = struct.unpack("<H", body[24:26])[0]  # first two bytes of the subformat GUID
    if tag not in (_PCM, _FLOAT):
        kind = _FORMAT_NAMES.get(tag, "unknown")
        raise AudioError(f"{name}: unsupported WAV compression {kind} (format tag 0x{tag:04x}); "
                         f"only uncompressed PCM and IEEE float are read; {_CONVERT_HINT}")
    if channels == 0 or rate == 0:
        raise AudioError(f"{name}: corrupt WAV header: {channels} channels at {rate} Hz")
    _check_rate(rate, f"{name}: the WAV header's sample rate")
    if tag == _PCM and bits == 8:
        raise AudioError(f"{name}: 8-bit PCM WAV is not supported (too coarse for speech "
                         f"recognition); {_CONVERT_HINT}")
    supported = (16, 24, 32) if tag == _PCM else (32, 64)
    if bits not in supported:
        raise AudioError(f"{name}: unsupported {bits}-bit {_FORMAT_NAMES[tag]} WAV "
                         f"(supported: {supported} bits); {_CONVERT_HINT}")
    if block_align != channels * bits // 8:
        raise AudioError(f"{name}: corrupt WAV header: block align {block_align} does not match "
                         f"{channels} channels of {bits} bits")
    return _WavFormat(tag, channels, rate, bits, block_align)


def _find_chunks(data: bytes, name: str) -> tuple[_WavFormat, memoryview]:
    fmt: _WavFormat | None = None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        start, end = pos + 8, pos + 8 + size
        if chunk_id == b"data":
            if fmt is None:
                raise AudioError(f"{name}: corrupt WAV: data chunk before the fmt chunk")
            if size == _STREAMED:  # the data runs to the end, cut to whole frames
                end = start + (len(data) - start) // fmt.block_align * fmt.block_align
            if end > len(data):
                raise AudioError(f"{name}: truncated WAV: data chunk declares {size} bytes but "
                                 f"only {len(data) - start} are present")
            return fmt, memoryview(data)[start:end]
        if end > len(data):
            raise AudioError(f"{name}: corrupt or truncated WAV header: chunk {chunk_id!r} "
                             f"declares {size} bytes but only {len(data) - start} remain")
        if chunk_id == b"fmt ":
            fmt = _parse_fmt(data[start:end], name)
        pos = end + (size & 1)  # chunks are padded to even length
    missing = "fmt" if fmt is None else "data"
    raise AudioError(f"{name}: corrupt or truncated WAV: no {missing} chunk")


def _scale_ints(ints: np.ndarray) -> np.ndarray:
    """Signed 16- or 32-bit PCM samples (WAV files, arrays) to float32 in [-1, 1)."""
    return (ints / float(2 ** (8 * ints.dtype.itemsize - 1))).astype(np.float32)


def _decode_frames(pcm: memoryview, fmt: _WavFormat) -> np.ndarray:
    if fmt.tag == _FLOAT:
        return np.frombuffer(pcm, dtype="<f4" if fmt.bits == 32 else "<f8").astype(np.float32)
    if fmt.bits in (16, 32):
        return _scale_ints(np.frombuffer(pcm, dtype=f"<i{fmt.bits // 8}"))
    raw = np.frombuffer(pcm, dtype=np.uint8).reshape(-1, 3).astype(np.uint32)
    # Place the 3 bytes in the top of a 32-bit word; viewing it as int32 sign-extends.
    words = (raw[:, 0] << 8) | (raw[:, 1] << 16) | (raw[:, 2] << 24)
    return _scale_ints(words.view(np.int32))


def _wav_data(source: str | os.PathLike[str] | bytes | bytearray | memoryview) -> tuple[bytes, str]:
    """The bytes of a WAV path or buffer and a name for messages; OS errors become AudioError."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "<WAV bytes>"
    if not isinstance(source, (str, os.PathLike)):
        raise AudioError(f"a WAV file is read from a path or its bytes, got "
                         f"{type(source).__name__}")
    try:
        return Path(source).read_bytes(), str(source)
    except FileNotFoundError:
        raise AudioError(f"{source}: no such audio file; check the path") from None
    except IsADirectoryError:
        raise AudioError(f"{source}: is a directory; pass a WAV file in it") from None
    except (OSError, ValueError) as err:  # permissions, a NUL in the path, ...
        raise AudioError(f"{source}: cannot read the audio file ({err})") from None


def read_wav(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview,
) -> tuple[np.ndarray, int]:
    """Decode a WAV file (path or its bytes) to mono float32 in [-1, 1] and its sample rate.

    Reads 16/24/32-bit integer PCM and 32/64-bit float, plain or WAVE_FORMAT_EXTENSIBLE.
    Several channels are averaged into one. A data chunk of size 0xFFFFFFFF (written to a
    pipe by ffmpeg or arecord) runs to the end of the file; the RIFF size is not read.
    Returns (samples [n] float32, sample_rate).
    """
    data, name = _wav_data(source)
    if not data:
        raise AudioError(f"{name}: file is empty")
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        if data[:4] in (b"RIFX", b"RF64"):
            raise AudioError(f"{name}: {data[:4].decode()} WAV variant is not supported; "
                             f"{_CONVERT_HINT}")
        raise AudioError(f"{name}: not a WAV file (no RIFF/WAVE header); {_CONVERT_HINT}")
    fmt, pcm = _find_chunks(data, name)
    if len(pcm) == 0:
        raise AudioError(f"{name}: WAV contains no audio (zero-length data chunk)")
    if len(pcm) % fmt.block_align:
        raise AudioError(f"{name}: truncated WAV: data is {len(pcm)} bytes, not a whole number "
                         f"of {fmt.block_align}-byte frames")
    frames = _decode_frames(pcm, fmt).reshape(-1, fmt.channels)
    mono = frames[:, 0] if fmt.channels == 1 else frames.mean(axis=1, dtype=np.float64)
    return np.ascontiguousarray(mono, dtype=np.float32), fmt.sample_rate


# ---------------------------------------------------------------------------- resampling


@lru_cache(maxsize=16)
def _polyphase_bank(up: int, down: int) -> tuple[np.ndarray, int]:
    """Polyphase lowpass for upsample-by-``up``, downsample-by-``down``.

    Returns (bank [up, taps] float64 with bank[p, j] = up * h[j * up + p], half length).
    """
    max_rate = max(up, down)
    half = _RESAMPLE_ZERO_CROSSINGS * max_rate
    t = np.arange(-half, half + 1, dtype=np.float64)
    cutoff = _RESAMPLE_CUTOFF / max_rate  # fraction of the upsampled Nyquist frequency
    h = cutoff * np.sinc(cutoff * t) * np.kaiser(2 * half + 1, _RESAMPLE_KAISER_BETA)
    taps = -(-h.size // up)
    padded = np.zeros(taps * up)
    padded[: h.size] = h * up
    bank = padded.reshape(taps, up).T.copy()
    bank.setflags(write=False)
    return bank, half


def resample(samples: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited rational resampling of a mono signal; returns float32.

    Output length is ceil(len * target_sr / orig_sr), aligned so sample 0 stays at t = 0.
    """
    orig_sr = _check_rate(orig_sr, "the source sample rate")
    target_sr = _check_rate(target_sr, "the target sample rate")
    x = np.asarray(samples)
    if x.ndim != 1:
        raise AudioError(f"resample expects mono audio [n], got shape {x.shape}")
    if orig_sr == target_sr or x.size == 0:
        return x.astype(np.float32)
    g = math.gcd(orig_sr, target_sr)
    up, down = target_sr // g, orig_sr // g
    if max(up, down) > _MAX_RATIO_TERM:
        raise AudioError(f"{orig_sr} Hz -> {target_sr} Hz is the ratio {up}/{down}: its exact "
                         f"resampling filter would take {64 * 8 * 5 * max(up, down) / 2**20:.0f} "
                         f"MB; {_CONVERT_HINT}")
    if up == 1:  # 48, 32 kHz -> 16 kHz: the same filter, as dense products
        return _decimate(x.astype(np.float32, copy=False), down)
    return _resample_polyphase(x.astype(np.float64, copy=False), up, down)


def _resample_polyphase(x: np.ndarray, up: int, down: int) -> np.ndarray:
    """resample() by up/down (x float64), phase by phase."""
    bank, half = _polyphase_bank(up, down)
    taps = bank.shape[1]
    n_out = -(-x.size * up // down)
    pad_left, pad_right = taps, taps + half // up + down + 2
    xp = np.concatenate([np.zeros(pad_left), x, np.zeros(pad_right)])
    windows = np.lib.stride_tricks.sliding_window_view(xp, taps)  # windows[i, k] = xp[i + k]
    out = np.empty(n_out, dtype=np.float64)
    # y[n] = sum_j bank[t % up, j] * x[t // up - j] with t = n * down + half. Outputs
    # n0, n0 + up, n0 + 2 up, ... share one phase and step through x by `down`, so each
    # phase is a strided matrix-vector product over windows of x.
    for n0 in range(min(up, n_out)):
        t0 = n0 * down + half
        first = t0 // up + pad_left - (taps - 1)  # window whose last sample is x[t0 // up]
        kernel = bank[t0 % up, ::-1].copy()
        count = len(range(n0, n_out, up))
        for m0 in range(0, count, _RESAMPLE_BLOCK):
            m1 = min(m0 + _RESAMPLE_BLOCK, count)
            rows = windows[first + m0 * down : first + (m1 - 1) * down + 1 : down]
            out[n0 + m0 * up : n0 + m1 * up : up] = rows @ kernel
    return out.astype(np.float32)


@lru_cache(maxsize=8)
def _decimation_bank(down: int) -> tuple[np.ndarray, int]:
    """The resampling filter for 1/`down`, split into blocks of `down` taps: (g float32
    [blocks, down], first) with y[n] = sum_i g[i] . x[(n + first + i) * down : ... + down]."""
    bank, half = _polyphase_bank(1, down)
    h = bank[0]
    # y[n] = sum_j h[j] x[n * down + half - j]: offset k = half - j = down * q + p
    first, last = (half - h.size + 1) // down, half // down
    q = np.arange(first, last + 1)[:, None]
    j = half - down * q - np.arange(down)[None, :]
    inside = (j >= 0) & (j < h.size)
    g = np.where(inside, h[np.clip(j, 0, h.size - 1)], 0.0).astype(np.float32)
    g.setflags(write=False)
    return g, first


def _decimate(x: np.ndarray, down: int) -> np.ndarray:
    """resample() by 1/`down`, float32. The generic path's strided windows overlap (their
    stride, `down` samples, is below their length), so numpy copies them for every
    product; here the signal is read as rows of `down` samples, one matrix product gives
    every block of taps against every row, and shifted sums add the blocks up (3-6x
    faster at 48 kHz; bench/resample.py)."""
    g, first = _decimation_bank(down)
    blocks = g.shape[0]
    n_out = -(-x.size // down)
    rows = np.zeros((n_out + blocks, down), np.float32)  # row m: x[(m + first) * down ...]
    rows.reshape(-1)[-first * down: -first * down + x.size] = x
    out = np.empty(n_out, np.float32)
    for n0 in range(0, n_out, _DECIMATE_BLOCK):
        n1 = min(n0 + _DECIMATE_BLOCK, n_out)
        partial = g @ rows[n0:n1 + blocks - 1].T  # [blocks, n1 - n0 + blocks - 1]
        acc = partial[0, :n1 - n0].copy()
        for i in range(1, blocks):
            acc += partial[i, i:i + n1 - n0]
        out[n0:n1] = acc
    return out


def _as_float(x: np.ndarray) -> np.ndarray:
    """float32 samples of a float or int16 / int32 PCM array (scaled as in WAV files)."""
    kind, bits = x.dtype.kind, 8 * x.dtype.itemsize
    if kind == "f":
        return x.astype(np.float32)
    if kind == "i" and bits in (16, 32):
        return _scale_ints(x)
    if kind == "u" and bits == 8:  # as read_wav refuses 8-bit PCM
        raise AudioError("8-bit audio is not supported (too coarse for speech recognition); "
                         "pass float32 samples in [-1, 1] or int16 PCM")
    hint = " (16-bit values in a wider array: .astype(np.int16))" if kind in "iu" else ""
    raise AudioError(f"audio samples must be floats in [-1, 1] or int16 / int32 PCM, got "
                     f"dtype {x.dtype}{hint}")


def _mix_down(x: np.ndarray) -> np.ndarray:
    """[n], [n, channels] or [channels, n] float32 -> [n]: the short axis is channels."""
    if x.ndim == 1:
        return x
    if x.ndim == 2:
        rows, cols = x.shape
        if 0 < rows <= MAX_CHANNELS and cols > rows:
            return x.mean(axis=0, dtype=np.float64).astype(np.float32)
        if 0 < cols <= MAX_CHANNELS and rows > cols:
            return x.mean(axis=1, dtype=np.float64).astype(np.float32)
    raise AudioError(f"audio arrays are shaped [n], [n, channels] or [channels, n] with at "
                     f"most {MAX_CHANNELS} channels (fewer than samples); got shape {x.shape}")


def _as_mono(samples: np.ndarray) -> np.ndarray:
    x = _mix_down(_as_float(np.asarray(samples)))
    if not np.isfinite(x).all():
        raise AudioError("audio contains NaN or infinite samples")
    return x


def load_audio(
    source: str | os.PathLike[str] | bytes | np.ndarray,
    sr: int = SAMPLE_RATE,
    *,
    source_rate: int | None = None,
) -> np.ndarray:
    """Mono float32 audio at ``sr`` Hz from a WAV path, WAV bytes or an array.

    An array is taken to be at ``source_rate`` Hz (default: already at ``sr``); its
    layouts and dtypes are in the module docstring. A WAV file states its own rate, so
    ``source_rate`` with one is refused rather than ignored.
    """
    if isinstance(source, np.ndarray):
        rate = sr if source_rate is None else _check_rate(source_rate, "the array's sample rate")
        samples = _as_mono(source)
        if not samples.size:  # as read_wav refuses a zero-length data chunk
            raise AudioError("the audio array holds no samples")
    elif isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)):
        if source_rate is not None:
            raise AudioError("a sample rate applies to arrays only: a WAV file states its "
                             "own; leave sample_rate out")
        samples, rate = read_wav(source)
        samples = _as_mono(samples)
    else:
        hint = " (np.asarray(samples, np.float32) makes one)" if isinstance(source, list) else ""
        raise AudioError(f"audio must be a WAV file path, WAV bytes or a numpy array of "
                         f"samples, got {type(source).__name__}{hint}")
    return resample(samples, rate, sr)


# ---------------------------------------------------------------------------- features


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, math.log(6.4) / 27.0
    linear = hz / f_sp
    log = min_log_hz / f_sp + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep
    return np.where(hz >= min_log_hz, log, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    log = min_log_hz * np.exp(logstep * (np.maximum(mel, min_log_mel) - min_log_mel))
    return np.where(mel >= min_log_mel, log, f_sp * mel)


@lru_cache(maxsize=4)
def mel_filters(n_mels: int, sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT) -> np.ndarray:
    """Slaney-normalised triangular mel filters [n_mels, n_fft // 2 + 1] float64 (read-only).

    Same construction as ``librosa.filters.mel(sr, n_fft, n_mels)`` (fmin 0, fmax sr/2).
    """
    fft_hz = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges_mel = np.linspace(0.0, _hz_to_mel(np.float64(sample_rate / 2)), n_mels + 2)
    edges_hz = _mel_to_hz(edges_mel)
    widths = np.diff(edges_hz)
    ramps = edges_hz[:, None] - fft_hz[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]  # equal area per filter
    weights.setflags(write=False)
    return weights


@lru_cache(maxsize=1)
def _hann_periodic() -> np.ndarray:
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)
    window.setflags(write=False)
    return window


def log_mel_spectrogram(samples: np.ndarray, n_mels: int = 80) -> np.ndarray:
    """Whisper's log-mel features of one 30-second window.

    ``samples``: mono 16 kHz audio [n] (padded with zeros or trimmed to 480000 samples).
    Returns float32 [n_mels, 3000]. ``n_mels`` is 80, or 128 for large-v3.
    """
    if n_mels not in (80, 128):
        raise ValueError(f"n_mels must be 80 or 128 (Whisper's feature sizes), got {n_mels}")
    x = _as_mono(samples).astype(np.float64)[:N_SAMPLES]
    return _log_mel(np.pad(x, (0, N_SAMPLES - x.size)), n_mels)


def log_mel_frames(samples: np.ndarray, n_mels: int) -> np.ndarray:
    """openai-whisper's log_mel_spectrogram(audio, padding=N_SAMPLES) cut to the audio's
    own frames: float32 [n_mels, len(samples) // 160], normalised against the whole
    recording's loudest frame (log_mel_spectrogram normalises each 30 s window instead)."""
    x = np.pad(np.asarray(samples, np.float64), (0, N_SAMPLES))
    return _log_mel(x, n_mels)[:, :len(samples) // HOP_LENGTH]


def _log_mel(x: np.ndarray, n_mels: int) -> np.ndarray:
    """Normalised log-mel features float32 [n_mels, frames] of float64 samples `x`: a
    frame centred on every hop (Whisper drops the last one), FFTs in blocks that bound
    memory on long recordings, levels clipped 8 below the loudest frame's."""
    x = np.pad(x, N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP_LENGTH][:-1]
    mel = np.empty((n_mels, len(frames)))
    for start in range(0, len(frames), _FFT_BLOCK):
        spectrum = np.fft.rfft(frames[start:start + _FFT_BLOCK] * _hann_periodic(), axis=-1)
        power = spectrum.real**2 + spectrum.imag**2
        mel[:, start:start + _FFT_BLOCK] = mel_filters(n_mels) @ power.T
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


def iter_windows(samples: np.ndarray, n_mels: int = 80) -> Iterator[tuple[float, np.ndarray]]:
    """Split 16 kHz mono audio into consecutive 30 s windows.

    Yields (start_seconds, log-mel [n_mels, 3000] float32) per window; the last window is
    zero-padded. Each window is normalised on its own (as Hugging Face's chunked pipeline
    does), not against the whole recording's maximum as openai-whisper's transcribe does.
    Empty audio yields nothing.
    """
    x = _as_mono(samples)
    for start in range(0, x.size, N_SAMPLES):
        yield start / SAMPLE_RATE, log_mel_spectrogram(x[start : start + N_SAMPLES], n_mels)
