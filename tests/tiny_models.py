"""Tiny random checkpoints of every supported family, built and saved locally (no hub).
Initialised with a large weight scale so that greedy and beam outputs vary token to token."""
from __future__ import annotations

from pathlib import Path

FAMILIES = ("t5", "t5v11", "bart", "mbart", "marian")
VOCAB = 96


def build_tiny(family: str, out: Path, seed: int = 0) -> Path:
    import torch
    import transformers as tf
    torch.manual_seed(seed)
    common = dict(vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=3,
                  encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
                  decoder_ffn_dim=64, max_position_embeddings=80, init_std=0.3,
                  forced_eos_token_id=None)
    if family == "t5":  # v1.0: relu, tied and scaled head
        model = tf.T5ForConditionalGeneration(tf.T5Config(
            vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=64, num_layers=3, num_heads=4,
            feed_forward_proj="relu", decoder_start_token_id=0, initializer_factor=6.0))
    elif family == "t5v11":  # v1.1 / Flan: gated-gelu, d_kv != d_model / heads, untied
        model = tf.T5ForConditionalGeneration(tf.T5Config(
            vocab_size=VOCAB, d_model=32, d_kv=16, d_ff=48, num_layers=3, num_heads=3,
            feed_forward_proj="gated-gelu", tie_word_embeddings=False,
            decoder_start_token_id=0, initializer_factor=6.0))
        with torch.no_grad():  # a really untied head
            model.lm_head.weight = torch.nn.Parameter(torch.randn(VOCAB, 32) * 3.0)
    elif family == "bart":
        model = tf.BartForConditionalGeneration(tf.BartConfig(**common))
    elif family == "mbart":
        model = tf.MBartForConditionalGeneration(tf.MBartConfig(**common))
    elif family == "marian":
        model = tf.MarianMTModel(tf.MarianConfig(
            **{**common, "max_position_embeddings": 80}, pad_token_id=VOCAB - 1,
            decoder_start_token_id=VOCAB - 1, eos_token_id=0, activation_function="swish",
            scale_embedding=True))
    else:
        raise ValueError(family)
    _spread_weights(model, seed)
    model.eval().save_pretrained(out)
    return out


def _spread_weights(model, seed: int) -> None:
    """Default inits make tiny models repeat one token; wider weights make outputs vary."""
    import torch
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                fan_in = p.shape[0] if "embed" in name or "shared" in name else p.shape[1]
                scale = 1.0 if "embed" in name or "shared" in name else 1.5 / fan_in ** 0.5
                p.copy_(torch.randn(p.shape, generator=gen) * scale)
            elif name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)


def build_t5_text_checkpoint(out: Path) -> Path:
    """A tiny random T5 with T5's 32k vocabulary, for packages that carry the real T5
    tokenizer (its outputs are noise)."""
    import torch
    import transformers as tf
    torch.manual_seed(0)
    model = tf.T5ForConditionalGeneration(tf.T5Config(
        vocab_size=32128, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        decoder_start_token_id=0, initializer_factor=4.0))
    model.eval().save_pretrained(out)
    return out


def build_tiny_whisper(out: Path) -> Path:
    """A tiny random Whisper (80 mels, 30 s windows, 63 tokens) with the generation config
    export reads its prompt tokens from, saved with save_pretrained."""
    import json

    import torch
    import transformers as tf
    torch.manual_seed(0)
    config = tf.WhisperConfig(
        vocab_size=63, d_model=16, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        max_source_positions=1500, max_target_positions=32, bos_token_id=60, eos_token_id=60,
        pad_token_id=60, decoder_start_token_id=61)
    tf.WhisperForConditionalGeneration(config).eval().save_pretrained(out)
    gen = out / "generation_config.json"
    extra = {k: v for k, v in json.loads(gen.read_text()).items() if k != "_from_model_config"}
    gen.write_text(json.dumps({**extra, "no_timestamps_token_id": 58, "is_multilingual": False,
                               "task_to_id": {"transcribe": 56, "translate": 57}}))
    return out
