"""Whisper export and transcription.

Tiny random Whisper (80 mels, multilingual, its own word-level tokenizer) exported fp32
from a Hugging Face directory and from a CTranslate2 directory: greedy, beam, timestamp
and language-detection tokens equal transformers' `generate` on the same weights. Real
tiny.en weights against faster-whisper: test_whisper_real.py."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from ct2_testing import hf_whisper_to_ct2
import pytest

import edgeseq
from edgeseq.errors import OptionsError, PackageError

SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|de|>", "<|fr|>",
            "<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>",
            "<|nospeech|>", "<|notimestamps|>"]
WORDS, STAMPS = 50, 40
VOCAB = [f"w{i}" for i in range(WORDS)] + SPECIALS + [f"<|{i * 0.02:.2f}|>" for i in range(STAMPS)]
ID = {t: i for i, t in enumerate(VOCAB)}
EOT, SOT = ID["<|endoftext|>"], ID["<|startoftranscript|>"]
NEW_TOKENS = 24
MAX_INITIAL = 10  # timestamp tokens, i.e. 0.2 s


# -- the tiny model, as a HF directory and as a CTranslate2 directory ------------------------
def _write_tokenizer(path: Path) -> None:
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(VOCAB[:WORDS])}, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens([AddedToken(t, special=True) for t in VOCAB[WORDS:]])
    tok.save(str(path))


def _build_tiny(out: Path, seed: int = 0):
    """Random weights spread wide enough that greedy output varies token to token."""
    torch = pytest.importorskip("torch")
    tf = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    config = tf.WhisperConfig(
        vocab_size=len(VOCAB), num_mel_bins=80, d_model=32, encoder_layers=2, decoder_layers=3,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
        decoder_ffn_dim=64, max_source_positions=1500, max_target_positions=64,
        bos_token_id=EOT, eos_token_id=EOT, pad_token_id=EOT, decoder_start_token_id=SOT)
    model = tf.WhisperForConditionalGeneration(config).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "encoder.embed_positions" in name:
                continue  # sinusoidal
            if p.dim() >= 2:
                fan_in = int(np.prod(p.shape[1:]))
                scale = 3.0 if "embed_positions" in name else 1.0 if "embed" in name else 2.5 / fan_in ** 0.5
                p.copy_(torch.randn(p.shape, generator=gen) * scale)
            elif name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    g = model.generation_config
    g.is_multilingual = True
    g.lang_to_id = {t: ID[t] for t in ("<|en|>", "<|de|>", "<|fr|>")}
    g.task_to_id = {"transcribe": ID["<|transcribe|>"], "translate": ID["<|translate|>"]}
    g.no_timestamps_token_id = ID["<|notimestamps|>"]
    g.prev_sot_token_id = ID["<|startofprev|>"]
    g.suppress_tokens = [1, 2] + [ID[t] for t in SPECIALS[1:] if t not in g.lang_to_id]
    g.begin_suppress_tokens = [0, EOT]
    g.max_initial_timestamp_index = MAX_INITIAL
    g.max_length = 64
    model.save_pretrained(out)
    _write_tokenizer(out / "tokenizer.json")
    return model


def _write_ct2_dir(model, hf_dir: Path, out: Path) -> Path:
    from edgeseq.export.ct2_format import write_ct2_model
    out.mkdir(parents=True)
    write_ct2_model(out / "model.bin", hf_whisper_to_ct2(model))
    gen = model.generation_config
    (out / "config.json").write_text(json.dumps({
        "suppress_ids": gen.suppress_tokens, "suppress_ids_begin": gen.begin_suppress_tokens,
        "lang_ids": sorted(gen.lang_to_id.values())}))
    (out / "vocabulary.txt").write_text("\n".join(VOCAB))
    shutil.copy(hf_dir / "tokenizer.json", out / "tokenizer.json")
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(torch model, HF dir, CT2 dir, {source: (package dir, export report)})."""
    from edgeseq.export import export_checkpoint
    root = tmp_path_factory.mktemp("whisper")
    model = _build_tiny(root / "hf")
    ct2 = _write_ct2_dir(model, root / "hf", root / "ct2")
    packages = {name: (root / f"pkg-{name}", export_checkpoint(src, root / f"pkg-{name}", quant="fp32"))
                for name, src in (("hf", root / "hf"), ("ct2", ct2))}
    return model, root / "hf", ct2, packages


def _mel(seconds: float = 5.0) -> np.ndarray:
    from edgeseq.export.whisper_validate import synthetic_audio
    from edgeseq.runtime.audio import log_mel_frames
    frames = log_mel_frames(synthetic_audio(seconds), 80)
    mel = np.zeros((80, 3000), np.float32)
    mel[:, :frames.shape[1]] = frames
    return mel


def _hf_generate(model, mel: np.ndarray, **kw) -> list[int]:
    """transformers' tokens for one window, prompt and padding stripped."""
    import torch
    with torch.no_grad():
        out = model.generate(torch.from_numpy(mel)[None], max_new_tokens=NEW_TOKENS, do_sample=False,
                             force_unique_generate_call=True, return_dict_in_generate=True, **kw)
    prompt = 3 if kw.get("return_timestamps") else 4  # sot, language, task [, notimestamps]
    tokens = out.sequences[0].tolist()
    assert tokens[0] == SOT
    assert (tokens[prompt - 1] == ID["<|notimestamps|>"]) == (prompt == 4)
    tokens = tokens[prompt:]
    return tokens[:tokens.index(EOT)] if EOT in tokens else tokens


def _ours(package: Path, mel: np.ndarray, language: str | None = "en", **options):
    from edgeseq.runtime.transcribe import TranscribeOptions, Transcriber
    transcriber = Transcriber(edgeseq.load(str(package), threads=1))
    opts = TranscribeOptions(max_new_tokens=NEW_TOKENS, **options)
    return transcriber.decode_window(mel, opts, language)


# -- tiny model: export equivalence ----------------------------------------------------------
@pytest.mark.parametrize("source", ["hf", "ct2"])
def test_fp32_export_matches_pytorch_within_tolerance(tiny, source):
    v = tiny[3][source][1].validation
    assert v["decoder_tolerance"] == 1e-4 * max(1.0, v["reference_logit_scale"])
    assert v["decoder_max_abs_diff"] <= v["decoder_tolerance"]
    assert v["decoder_cached_max_abs_diff"] <= v["decoder_tolerance"]
    assert v["encoder_max_abs_diff"] <= v["encoder_tolerance"]


def test_manifest_describes_whisper(tiny):
    manifest = edgeseq.load(str(tiny[3]["hf"][0])).manifest
    assert manifest.tensor_names()["encoder"]["inputs"] == ["input_features"]
    w = manifest.generation["whisper"]
    assert (w["sot"], w["eot"], w["no_timestamps"], w["timestamp_begin"]) == (SOT, EOT, 60, 61)
    assert w["languages"] == {"en": 52, "de": 53, "fr": 54} and w["is_multilingual"]
    assert (w["transcribe"], w["translate"], w["begin_suppress_tokens"]) == (56, 55, [0, EOT])
    ct2 = edgeseq.load(str(tiny[3]["ct2"][0])).manifest.generation["whisper"]
    assert {k: v for k, v in ct2.items()} == w


@pytest.mark.parametrize("source", ["hf", "ct2"])
@pytest.mark.parametrize("case", [{"language": "en"}, {"language": "de", "task": "translate"},
                                  {"language": "en", "num_beams": 3}], ids=["greedy", "translate", "beam3"])
def test_tokens_equal_transformers_generate(tiny, source, case):
    model, mel = tiny[0], _mel()
    case = dict(case)
    language = case.pop("language")
    expected = _hf_generate(model, mel, language=language, **case)
    got = _ours(tiny[3][source][0], mel, language, **case).tokens
    assert len(expected) >= 8  # the tiny model really generates
    assert got == expected


def test_timestamp_rules_equal_transformers(tiny):
    model, mel = tiny[0], _mel()
    expected = _hf_generate(model, mel, language="en", return_timestamps=True)
    got = _ours(tiny[3]["hf"][0], mel, "en", timestamps=True,
                max_initial_timestamp=MAX_INITIAL * 0.02).tokens
    assert got == expected
    assert any(t >= ID["<|0.00|>"] for t in got)


def test_language_detection_equals_transformers(tiny):
    import torch
    model = tiny[0]
    for seconds in (3.0, 5.0, 9.0):
        mel = _mel(seconds)
        with torch.no_grad():
            expected = VOCAB[int(model.detect_language(torch.from_numpy(mel)[None])[0])][2:-2]
        decoded = _ours(tiny[3]["hf"][0], mel, None)
        assert decoded.language == expected
        assert decoded.tokens == _ours(tiny[3]["hf"][0], mel, expected).tokens


def test_split_ct2_parts_export_the_same_package(tiny, tmp_path):
    from edgeseq.export import export_checkpoint
    data = (tiny[2] / "model.bin").read_bytes()
    parts = tmp_path / "parts"
    shutil.copytree(tiny[2], parts)
    (parts / "model.bin").unlink()
    (parts / "model.bin.part1").write_bytes(data[:len(data) // 2])
    (parts / "model.bin.part2").write_bytes(data[len(data) // 2:])
    export_checkpoint(parts, tmp_path / "pkg", quant="fp32", validate=False)
    same = json.loads((tiny[3]["ct2"][0] / "manifest.json").read_text())["files"]["weights.bin"]
    assert json.loads((tmp_path / "pkg" / "manifest.json").read_text())["files"]["weights.bin"] == same


def test_long_audio_is_cut_into_windows(tiny):
    from edgeseq.export.whisper_validate import synthetic_audio
    engine = edgeseq.load(str(tiny[3]["hf"][0]), threads=1)
    result = engine.transcribe(synthetic_audio(65.0), language="en", max_new_tokens=8)
    assert result.stats.windows == 3 and result.language == "en"
    assert [s.start for s in result.segments] == [0.0, 30.0, 60.0][:len(result.segments)]
    assert result.segments[-1].end == pytest.approx(65.0)
    stamped = engine.transcribe(synthetic_audio(8.0), language="en", timestamps=True,
                                max_new_tokens=NEW_TOKENS)
    assert stamped.segments and all(s.start <= s.end for s in stamped.segments)


def test_text_generation_on_a_whisper_package_points_to_transcribe(tiny, capsys):
    from edgeseq.cli import main
    from edgeseq.errors import InputError
    package = str(tiny[3]["hf"][0])
    engine = edgeseq.load(package, threads=1)
    for call in (lambda: engine.generate("hello"), lambda: engine.generate([50257, 50362]),
                 lambda: next(engine.stream("hello"))):
        with pytest.raises(InputError, match="Whisper package: transcribe"):
            call()
    assert main(["generate", package, "hello"]) == 2
    assert "transcribe" in capsys.readouterr().err


def test_the_cli_transcribes_a_wav_file_as_the_python_api_does(tiny, tmp_path, capsys):
    import wave

    from edgeseq.cli import main
    from edgeseq.export.whisper_validate import synthetic_audio
    package = str(tiny[3]["hf"][0])
    samples = synthetic_audio(6.0)
    path = tmp_path / "clip.wav"
    with wave.open(str(path), "wb") as out:  # 16-bit PCM, as recorders write it
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(16000)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    expected = edgeseq.load(package, threads=1).transcribe(str(path), language="en")
    args = ["transcribe", package, str(path), "--language", "en"]
    assert main(args + ["--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["text"], printed["language"]) == (expected.text, "en")
    assert main(args + ["--draft", "layers"]) == 0  # greedy speculation: the same words
    assert capsys.readouterr().out == expected.text.strip() + "\n"
    assert main(args + ["--timestamps"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(line.startswith("[") and " -> " in line for line in lines)
    (tmp_path / "noise.wav").write_bytes(b"RIFF not a wave file")
    assert main(["transcribe", package, str(tmp_path / "noise.wav")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgeseq: error:") and "Traceback" not in err


@pytest.mark.parametrize("exit_layer", [None, 1])
def test_layer_drafting_gives_the_plain_greedy_tokens(tiny, exit_layer):
    mel = _mel(6.0)
    package = tiny[3]["hf"][0]
    from edgeseq.runtime.transcribe import TranscribeOptions, Transcriber, TranscriptionStats
    plain = _ours(package, mel).tokens
    stats = TranscriptionStats()
    opts = TranscribeOptions(max_new_tokens=NEW_TOKENS, draft="layers", exit_layer=exit_layer, max_draft=4)
    drafted = Transcriber(edgeseq.load(str(package), threads=1)).decode_window(mel, opts, "en", stats).tokens
    assert drafted == plain and len(plain) > 4
    assert stats.drafted > 0 and stats.decoder_passes > 0


def test_a_window_whose_drafting_is_off_decodes_as_plain_greedy(tiny, monkeypatch):
    """Off for the window (no probe due within it), layer drafting costs nothing: plain
    greedy's loop, no drafter made, the plain tokens."""
    import edgeseq.runtime.transcribe as transcribe
    from edgeseq.runtime.draft_control import DraftController
    from edgeseq.runtime.transcribe import TranscribeOptions, Transcriber, TranscriptionStats
    mel = _mel(6.0)
    package = tiny[3]["hf"][0]
    plain = _ours(package, mel).tokens
    monkeypatch.setattr(DraftController, "off_for_call", lambda self: True)

    def no_drafter(*args, **kwargs):
        raise AssertionError("a drafter was made for a window whose drafting is off")
    monkeypatch.setattr(transcribe, "self_drafter", no_drafter)
    stats = TranscriptionStats()
    opts = TranscribeOptions(max_new_tokens=NEW_TOKENS, draft="layers", max_draft=4)
    off = Transcriber(edgeseq.load(str(package), threads=1)).decode_window(mel, opts, "en", stats)
    assert off.tokens == plain and len(plain) > 4
    assert stats.drafted == 0 and stats.decoder_passes > 0


DRAFT_WORDS = list(range(0, WORDS, 2)) + [EOT]  # a draft head over half the words and EOT


@pytest.fixture(scope="module")
def draft_exits(tiny, tmp_path_factory):
    """The tiny model exported with a draft exit after layer 1 (its own head over
    DRAFT_WORDS, as models/whisper_exits trains them): (package, head weight [N, d])."""
    import torch
    from safetensors.numpy import save_file
    from edgeseq.export import export_checkpoint
    model, _, ct2, _ = tiny
    heads_dir = tmp_path_factory.mktemp("draft-exits")
    embed = model.model.decoder.embed_tokens.weight.detach().numpy()
    turn = np.random.default_rng(1).standard_normal((32, 32)).astype(np.float32) * 0.1
    weight = embed[DRAFT_WORDS] @ (np.eye(32, dtype=np.float32) + turn)
    save_file({"exit_heads.1.weight": weight, "exit_heads.1.vocab": np.array(DRAFT_WORDS)},
              str(heads_dir / "exit_heads.safetensors"))
    (heads_dir / "edgeseq_exits.json").write_text(json.dumps(
        {"exits": [1, 3], "shared_head": False, "exit_trained": False}))
    package = tmp_path_factory.mktemp("draft-pkg") / "pkg"
    with torch.no_grad():
        export_checkpoint(ct2, package, quant="fp32", exit_heads=heads_dir)
    return package, weight


def test_a_draft_exit_scores_its_vocabulary_from_layer_one(tiny, draft_exits):
    import torch
    from edgeseq.runtime.decoder import LayerPlan
    model = tiny[0]
    package, weight = draft_exits
    engine = edgeseq.load(str(package), threads=1)
    assert engine.manifest.exits["shared_head"] is False
    assert engine.manifest.exits["draft_vocab"] == {"1": len(DRAFT_WORDS)}
    mel = _mel(4.0)
    tokens = [SOT, ID["<|en|>"], ID["<|transcribe|>"], ID["<|notimestamps|>"], 5, 9, 13]
    with torch.no_grad():
        out = model(torch.from_numpy(mel)[None], decoder_input_ids=torch.tensor([tokens]),
                    output_hidden_states=True)
        hidden = model.model.decoder.layer_norm(out.decoder_hidden_states[1])[0].numpy()
    expected = np.full((len(tokens), len(VOCAB)), -1e9, np.float32)
    expected[:, DRAFT_WORDS] = hidden @ weight.T
    runner = engine.runner
    state = runner.encode_features(mel[None])
    got = runner.step(np.array([tokens]), state, runner.new_cache(1, 16), LayerPlan.first(1, 3))[0]
    np.testing.assert_allclose(got, expected, atol=1e-3, rtol=1e-4)
    full = runner.step(np.array([tokens]), state, runner.new_cache(1, 16))[0]
    np.testing.assert_allclose(full, out.logits[0].numpy(), atol=1e-3, rtol=1e-4)  # model unchanged


@pytest.mark.parametrize("exit_layer", [None, 1])
def test_drafting_from_a_draft_exit_gives_the_plain_transcript(tiny, draft_exits, exit_layer):
    from edgeseq.runtime.transcribe import TranscribeOptions, Transcriber, TranscriptionStats
    mel = _mel(6.0)
    plain = _ours(tiny[3]["hf"][0], mel).tokens
    stats = TranscriptionStats()
    opts = TranscribeOptions(max_new_tokens=NEW_TOKENS, draft="layers", exit_layer=exit_layer, max_draft=4)
    engine = edgeseq.load(str(draft_exits[0]), threads=1)
    drafted = Transcriber(engine).decode_window(mel, opts, "en", stats).tokens
    assert drafted == plain and len(plain) > 4
    assert stats.drafted > 0


def test_lossy_skipping_runs_fewer_layers_and_all_layers_is_the_plain_transcript(tiny):
    from edgeseq.runtime.transcribe import TranscribeOptions, Transcriber, TranscriptionStats
    engine = edgeseq.load(str(tiny[3]["hf"][0]), threads=1)
    layers = engine.arch.decoder_layers
    mel = _mel(6.0)

    def window(**options):
        stats = TranscriptionStats()
        opts = TranscribeOptions(max_new_tokens=NEW_TOKENS, **options)
        return Transcriber(engine).decode_window(mel, opts, "en", stats).tokens, stats

    plain, full_stats = window()
    assert window(exit_after=layers)[0] == plain
    for options in (dict(exit_after=1), dict(skip_ratio=2.0), dict(exit_threshold=0.0)):
        tokens, stats = window(**options)
        assert tokens and stats.layers_executed < full_stats.layers_executed, options
    with pytest.raises(OptionsError, match="one of skip_ratio"):
        TranscribeOptions(exit_after=1, timestamps=True)


def test_layer_drafting_is_refused_where_it_cannot_stay_exact(tiny):
    engine = edgeseq.load(str(tiny[3]["hf"][0]), threads=1)
    for bad in (dict(timestamps=True), dict(num_beams=2)):
        with pytest.raises(OptionsError, match="greedy decoding without timestamps"):
            engine.transcribe(np.zeros(16000, np.float32), language="en", draft="layers", **bad)
    with pytest.raises(OptionsError, match="'layers'"):
        engine.transcribe(np.zeros(16000, np.float32), language="en", draft="input")


def test_clear_errors(tiny, tiny_package):
    engine = edgeseq.load(str(tiny[3]["hf"][0]), threads=1)
    with pytest.raises(OptionsError, match="task"):
        engine.transcribe(np.zeros(16000, np.float32), task="summarise")
    with pytest.raises(OptionsError, match="language 'xx'"):
        engine.transcribe(np.zeros(16000, np.float32), language="xx")
    with pytest.raises(PackageError, match="needs a Whisper package"):
        edgeseq.load(str(tiny_package("bart", "fp32")[0])).transcribe(np.zeros(16000, np.float32))


def test_an_int8_whisper_decoder_is_row_invariant(tiny, tmp_path):
    """Every row of a multi-token pass is bitwise the one-token pass there
    (export/row_invariant.py): layer drafting's verify passes give plain greedy's tokens
    even at near-ties."""
    from edgeseq.export import export_checkpoint
    export_checkpoint(tiny[1], tmp_path / "int8", quant="int8")
    engine = edgeseq.load(str(tmp_path / "int8"), threads=2)
    assert engine.manifest.row_invariant_decoder
    runner = engine.runner
    state = runner.encode_features(_mel(4.0)[None])
    tokens = np.random.default_rng(0).integers(0, WORDS, (1, 12)).astype(np.int64)
    one_by_one, together = runner.new_cache(1, 13), runner.new_cache(1, 13)
    single = np.stack([runner.step(tokens[:, i:i + 1], state, one_by_one)[0, 0] for i in range(12)])
    runner.step(tokens[:, :3], state, together)
    assert np.array_equal(runner.step(tokens[:, 3:], state, together)[0], single[3:])


def test_the_row_invariance_benchmark_transcribes_plain_and_with_layer_drafting(tiny, tmp_path):
    """bench.row_invariant --data audio: every shared clip, both ways, transcripts kept."""
    from bench.row_invariant import SHARED, child
    if not sorted((SHARED / "data" / "audio").glob("*.wav")):
        pytest.skip("the shared audio clips are absent")
    from edgeseq.export import export_checkpoint
    export_checkpoint(tiny[1], tmp_path / "int8", quant="int8")
    result = child(str(tmp_path / "int8"), "audio", 0, 2, 0)
    assert result["row_invariant"] is True and result["plain_s"] > 0 and result["layers_s"] > 0
    assert result["outputs"]["layers"] == result["outputs"]["plain"]
