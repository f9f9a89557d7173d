"""Bad audio, transcription options and Whisper manifest sections: each is refused with a
typed edgeseq error that names the problem (no numpy, pathlib or onnxruntime traceback,
no hang, no silently wrong transcript). No model is needed."""
from __future__ import annotations

import copy
import struct
from pathlib import Path

import numpy as np
import pytest

import edgeseq.runtime.audio as audio
from edgeseq.arch import ArchSpec
from edgeseq.errors import AudioError, EdgeseqError, InputError, OptionsError, PackageError
from edgeseq.runtime.engine import MAX_BEAMS
from edgeseq.runtime.transcribe import TranscribeOptions
from edgeseq.runtime.whisper_tokens import WhisperTokens

SR = 16000
SECOND = np.zeros(SR, np.float32)


def _wav(data: bytes, rate: int = SR, bits: int = 16, riff_size: int | None = None,
         data_size: int | None = None) -> bytes:
    """A mono integer-PCM WAV; the RIFF and data sizes can be overridden (streamed files)."""
    block = bits // 8
    fmt = struct.pack("<HHIIHH", 1, 1, rate, (rate * block) & 0xFFFFFFFF, block, bits)
    body = b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data) if data_size is None else data_size) + data
    return b"RIFF" + struct.pack("<I", len(body) if riff_size is None else riff_size) + body


# -- audio sources ------------------------------------------------------------------------
def test_audio_errors_are_edgeseq_input_errors_and_value_errors() -> None:
    assert audio.AudioError is AudioError
    assert issubclass(AudioError, InputError) and issubclass(AudioError, EdgeseqError)
    assert issubclass(AudioError, ValueError)  # callers catching ValueError keep working


def test_a_directory_given_as_audio_is_named(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match=f"{tmp_path}: is a directory"):
        audio.load_audio(tmp_path)


def test_a_missing_audio_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.wav"
    with pytest.raises(AudioError, match=f"{missing}: no such audio file"):
        audio.load_audio(str(missing))


@pytest.mark.parametrize("source", [[0.0] * 100, None, 5], ids=["list", "None", "int"])
def test_audio_of_another_type_is_refused_naming_the_accepted_types(source) -> None:
    with pytest.raises(AudioError, match="a WAV file path, WAV bytes or a numpy array"):
        audio.load_audio(source)


# -- sample rates -------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [0, 999, 10**9])
def test_array_sample_rates_outside_1_to_768_khz_are_refused(rate: int) -> None:
    with pytest.raises(AudioError, match=r"1000\.\.768000 Hz"):
        audio.load_audio(SECOND, source_rate=rate)


@pytest.mark.parametrize("rate", ["16000", True, 44100.5])
def test_sample_rates_must_be_whole_numbers_of_hz(rate) -> None:
    with pytest.raises(AudioError, match="whole number of Hz"):
        audio.load_audio(SECOND, source_rate=rate)


def test_a_whole_float_sample_rate_is_taken_as_an_int() -> None:
    assert audio.load_audio(SECOND[:8000], source_rate=8000.0).shape == (SR,)


def test_a_rate_sharing_almost_no_factor_with_16_khz_is_refused_not_run() -> None:
    """767,999 Hz: an exact filter of ~2 GB (it took 4 GB and 17 s); real rates resample."""
    with pytest.raises(AudioError, match="ratio 16000/767999"):
        audio.load_audio(SECOND[:1000], source_rate=767_999)
    for rate in (11_025, 22_050, 44_100, 88_200, 176_400, 352_800, 705_600, 768_000):
        assert audio.load_audio(np.zeros(rate // 10, np.float32), source_rate=rate).shape == (1600,)


def test_a_wav_header_rate_beyond_768_khz_is_refused() -> None:
    with pytest.raises(AudioError, match="the WAV header's sample rate must be in"):
        audio.read_wav(_wav(bytes(4), rate=0xFFFFFFFF))


def test_a_sample_rate_given_with_a_wav_is_refused_not_ignored() -> None:
    with pytest.raises(AudioError, match="a WAV file states its own"):
        audio.load_audio(_wav(bytes(200)), source_rate=8000)


# -- arrays -------------------------------------------------------------------------------
def test_an_empty_array_is_refused_as_an_empty_wav_is() -> None:
    with pytest.raises(AudioError, match="no samples"):
        audio.load_audio(np.zeros(0, np.float32))


def test_a_channels_first_array_is_mixed_down_over_its_channels() -> None:
    left, right = np.full(SR, 0.5, np.float32), np.full(SR, -0.1, np.float32)
    mono = audio.load_audio(np.stack([left, right]))  # [2, 16000]
    assert mono.shape == (SR,)
    np.testing.assert_allclose(mono, 0.2, atol=1e-7)


@pytest.mark.parametrize("shape", [(20, 30), (9, 9), (0, 2)])
def test_a_2d_array_without_a_short_channel_axis_is_refused(shape: tuple[int, int]) -> None:
    with pytest.raises(AudioError, match=r"\[n\], \[n, channels\] or \[channels, n\]"):
        audio.load_audio(np.zeros(shape, np.float32))


@pytest.mark.parametrize("dtype", ["<i2", "<i4"])
def test_integer_arrays_are_scaled_as_wav_files_of_that_width_are(dtype: str) -> None:
    ints = (np.linspace(-1, 1, 1000) * (np.iinfo(dtype).max)).astype(dtype)
    from_wav, _ = audio.read_wav(_wav(ints.tobytes(), bits=8 * ints.itemsize))
    np.testing.assert_array_equal(audio.load_audio(ints), from_wav)
    assert np.abs(from_wav).max() <= 1.0


@pytest.mark.parametrize("dtype, message", [("u1", "8-bit audio is not supported"),
                                            ("i8", "int16 / int32 PCM"),
                                            ("c8", "int16 / int32 PCM")])
def test_other_sample_types_are_refused(dtype: str, message: str) -> None:
    with pytest.raises(AudioError, match=message):
        audio.load_audio(np.zeros(100, dtype))


def test_a_streamed_wav_reads_its_data_to_the_end_of_the_file() -> None:
    ints = np.arange(-50, 50, dtype="<i2")
    plain, _ = audio.read_wav(_wav(ints.tobytes()))
    streamed, _ = audio.read_wav(_wav(ints.tobytes() + b"\x01", riff_size=0xFFFFFFFF,
                                      data_size=0xFFFFFFFF))  # cut mid-frame, as a pipe may be
    np.testing.assert_array_equal(streamed, plain)


# -- transcription options ----------------------------------------------------------------
@pytest.mark.parametrize("options", [
    {"num_beams": "2"}, {"num_beams": 1.5}, {"num_beams": True}, {"max_new_tokens": "5"},
    {"max_new_tokens": 2.5}, {"skip_ratio": "2"}, {"skip_ratio": float("nan")},
    {"max_initial_timestamp": float("nan")}, {"language": ["en"]}, {"timestamps": "yes"},
], ids=str)
def test_transcribe_options_of_the_wrong_type_name_the_option(options: dict) -> None:
    with pytest.raises(OptionsError, match=next(iter(options))):
        TranscribeOptions(**options)


def test_transcription_takes_at_most_as_many_beams_as_generate() -> None:
    assert TranscribeOptions(num_beams=MAX_BEAMS).num_beams == MAX_BEAMS
    with pytest.raises(OptionsError, match=f"num_beams must be in 1..{MAX_BEAMS}"):
        TranscribeOptions(num_beams=MAX_BEAMS + 1)


@pytest.mark.parametrize("options", [{"skip_ratio": 0.5}, {"exit_after": 0},
                                     {"exit_threshold": 1.5}, {"max_draft": 10**6}], ids=str)
def test_out_of_range_skipping_and_drafting_options_are_options_errors(options: dict) -> None:
    with pytest.raises(OptionsError, match=next(iter(options))):
        TranscribeOptions(**options)


@pytest.mark.parametrize("name", ["foo", "do_sample", "temperature"])
def test_unknown_transcription_options_are_refused_listing_the_known_ones(name: str) -> None:
    with pytest.raises(OptionsError, match=rf"unknown .*'{name}'.*known: .*'num_beams'"):
        TranscribeOptions.from_kwargs({name: 1})


# -- the manifest's Whisper section -------------------------------------------------------
VOCAB = 100
ARCH = ArchSpec.from_json({
    "family": "whisper", "d_model": 32, "num_heads": 4, "head_dim": 8, "d_ff": 64,
    "encoder_layers": 2, "decoder_layers": 2, "vocab_size": VOCAB, "norm": "layer",
    "norm_eps": 1e-5, "pre_norm": True, "activation": "gelu", "gated_ffn": False,
    "positions": "learned", "position_offset": 0, "max_source_positions": 1500,
    "max_target_positions": 64, "attention_scale": 0.35, "embed_scale": 1.0,
    "embedding_norm": False, "final_norm": True, "tied_head": True, "head_scale": 1.0,
    "final_logits_bias": False, "linear_bias": True, "key_bias": False, "num_mel_bins": 80})
WHISPER = {"sot": 51, "eot": 50, "no_timestamps": 60, "transcribe": 56, "translate": 55,
           "timestamp_begin": 61, "languages": {"en": 52, "de": 53}, "is_multilingual": True,
           "suppress_tokens": [1, 2, 57], "begin_suppress_tokens": [0, 50], "n_mels": 80,
           "max_target_positions": 64, "time_precision": 0.02, "input_stride": 2}


def test_a_sound_whisper_section_is_read() -> None:
    tokens = WhisperTokens.from_manifest({"whisper": WHISPER}, ARCH, "pkg")
    assert (tokens.sot, tokens.n_mels, tokens.languages) == (51, 80, {"en": 52, "de": 53})


@pytest.mark.parametrize("field, value", [
    ("n_mels", 128), ("n_mels", 0), ("time_precision", 0), ("sot", 10**6), ("eot", VOCAB),
    ("no_timestamps", -1), ("suppress_tokens", [10**6]), ("suppress_tokens", 5),
    ("languages", ["en"]), ("max_target_positions", 0), ("max_target_positions", 10**6),
    ("input_stride", 0), ("is_multilingual", "yes"),
], ids=lambda v: repr(v)[:12])
def test_a_bad_whisper_section_value_names_the_field_and_the_package(field: str, value) -> None:
    whisper = copy.deepcopy(WHISPER)
    whisper[field] = value
    with pytest.raises(PackageError, match=rf"^pkg-dir: .*generation\.whisper\.{field}"):
        WhisperTokens.from_manifest({"whisper": whisper}, ARCH, "pkg-dir")
