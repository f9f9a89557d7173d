"""Map Hugging Face configs and state dicts of each supported family onto edgeseq's
architecture spec and canonical weight names (linear weights stored [in, out])."""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import numpy as np

from edgeseq.arch import Activation, ArchSpec, Family, Norm, Positions
from edgeseq.errors import UnsupportedModelError

SUPPORTED_MODEL_TYPES = ("t5", "bart", "mbart", "marian")

_ACTIVATIONS = {"relu": Activation.RELU, "gelu": Activation.GELU,
                "gelu_new": Activation.GELU_TANH, "gelu_pytorch_tanh": Activation.GELU_TANH,
                "swish": Activation.SILU, "silu": Activation.SILU}

Weights = dict[str, np.ndarray]


def _activation(name: str) -> Activation:
    if name not in _ACTIVATIONS:
        raise UnsupportedModelError(
            f"activation {name!r} is not supported; supported: {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]


def spec_from_config(config: Any, state: Weights | None = None) -> ArchSpec:
    """Build the ArchSpec of a transformers config, or refuse with the supported list.
    With the state dict, a head is tied when its weights are the embedding's."""
    model_type = getattr(config, "model_type", None)
    if model_type in SUPPORTED_MODEL_TYPES:
        spec = _t5_spec(config) if model_type == "t5" else _bart_like_spec(config, Family(model_type))
        if state is not None and "lm_head.weight" in state:
            shared = state["shared.weight" if model_type == "t5" else "model.shared.weight"]
            tied = bool(np.array_equal(state["lm_head.weight"], shared))
            spec = dataclasses.replace(spec, tied_head=tied)
        return spec
    raise UnsupportedModelError(
        f"model type {model_type!r} is not supported; edgeseq exports "
        f"{', '.join(SUPPORTED_MODEL_TYPES)} (and whisper through its own importer)")


def _t5_spec(c: Any) -> ArchSpec:
    gated = bool(getattr(c, "is_gated_act", "gated" in c.feed_forward_proj))
    act = c.dense_act_fn if hasattr(c, "dense_act_fn") else c.feed_forward_proj.split("-")[-1]
    # transformers 5 ties T5 heads in the config and keeps v1.0's output scaling in
    # `scale_decoder_outputs`; older versions used tie_word_embeddings for both.
    scaled = bool(getattr(c, "scale_decoder_outputs", c.tie_word_embeddings))
    positions = int(getattr(c, "n_positions", 512) or 512)
    return ArchSpec(
        family=Family.T5, d_model=c.d_model, num_heads=c.num_heads, head_dim=c.d_kv,
        d_ff=c.d_ff, encoder_layers=c.num_layers, decoder_layers=c.num_decoder_layers,
        vocab_size=c.vocab_size, norm=Norm.RMS, norm_eps=c.layer_norm_epsilon, pre_norm=True,
        activation=_activation(act), gated_ffn=gated, positions=Positions.RELATIVE,
        position_offset=0, max_source_positions=positions, max_target_positions=positions,
        attention_scale=1.0, embed_scale=1.0, embedding_norm=False, final_norm=True,
        tied_head=bool(c.tie_word_embeddings), head_scale=c.d_model ** -0.5 if scaled else 1.0,
        final_logits_bias=False, linear_bias=False, key_bias=False,
        rel_buckets=c.relative_attention_num_buckets,
        rel_max_distance=c.relative_attention_max_distance)


def _bart_like_spec(c: Any, family: Family) -> ArchSpec:
    if c.encoder_attention_heads != c.decoder_attention_heads or \
            c.encoder_ffn_dim != c.decoder_ffn_dim:
        raise UnsupportedModelError("encoder and decoder must share head count and FFN size")
    learned = family != Family.MARIAN
    return ArchSpec(
        family=family, d_model=c.d_model, num_heads=c.decoder_attention_heads,
        head_dim=c.d_model // c.decoder_attention_heads, d_ff=c.decoder_ffn_dim,
        encoder_layers=c.encoder_layers, decoder_layers=c.decoder_layers,
        vocab_size=c.vocab_size, norm=Norm.LAYER, norm_eps=1e-5,
        pre_norm=family == Family.MBART, activation=_activation(c.activation_function),
        gated_ffn=False, positions=Positions.LEARNED if learned else Positions.SINUSOIDAL,
        position_offset=2 if learned else 0, max_source_positions=c.max_position_embeddings,
        max_target_positions=c.max_position_embeddings,
        attention_scale=(c.d_model // c.decoder_attention_heads) ** -0.5,
        embed_scale=math.sqrt(c.d_model) if c.scale_embedding else 1.0,
        embedding_norm=learned, final_norm=family == Family.MBART,
        tied_head=bool(getattr(c, "tie_word_embeddings", True)), head_scale=1.0,
        final_logits_bias=True, linear_bias=True, key_bias=True)


def canonical_weights(spec: ArchSpec, state: Weights) -> Weights:
    """Rename a family's state dict (numpy, torch layout) to edgeseq's canonical names."""
    mapper: Callable[[ArchSpec, Weights], Weights] = (
        _t5_weights if spec.family == Family.T5 else _bart_weights)
    return mapper(spec, state)


def _linear(state: Weights, prefix: str, out: Weights, name: str, bias: bool) -> None:
    out[f"{name}.w"] = np.ascontiguousarray(state[f"{prefix}.weight"].T)
    if bias:
        out[f"{name}.b"] = state[f"{prefix}.bias"]


def _norm(state: Weights, prefix: str, out: Weights, name: str, bias: bool) -> None:
    out[f"{name}.w"] = state[f"{prefix}.weight"]
    if bias:
        out[f"{name}.b"] = state[f"{prefix}.bias"]


def _t5_weights(spec: ArchSpec, s: Weights) -> Weights:
    w: Weights = {"embed.tokens": s["shared.weight"]}
    if not spec.tied_head:
        w["lm_head.w"] = np.ascontiguousarray(s["lm_head.weight"].T)
    for side, n_layers in (("enc", spec.encoder_layers), ("dec", spec.decoder_layers)):
        stack = "encoder" if side == "enc" else "decoder"
        w[f"{side}.rel_bias"] = s[f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
        _norm(s, f"{stack}.final_layer_norm", w, f"{side}.final_norm", False)
        for i in range(n_layers):
            block = f"{stack}.block.{i}.layer"
            for p in "qkvo":
                _linear(s, f"{block}.0.SelfAttention.{p}", w, f"{side}.{i}.self.{p}", False)
            _norm(s, f"{block}.0.layer_norm", w, f"{side}.{i}.self_norm", False)
            ffn = 1
            if side == "dec":
                for p in "qkvo":
                    _linear(s, f"{block}.1.EncDecAttention.{p}", w, f"dec.{i}.cross.{p}", False)
                _norm(s, f"{block}.1.layer_norm", w, f"dec.{i}.cross_norm", False)
                ffn = 2
            names = ("wi_0", "wi_1", "wo") if spec.gated_ffn else ("wi", "wo")
            for p in names:
                canon = {"wi_0": "fc1", "wi": "fc1", "wi_1": "gate", "wo": "fc2"}[p]
                _linear(s, f"{block}.{ffn}.DenseReluDense.{p}", w, f"{side}.{i}.ffn.{canon}", False)
            _norm(s, f"{block}.{ffn}.layer_norm", w, f"{side}.{i}.ffn_norm", False)
    return w


def _bart_weights(spec: ArchSpec, s: Weights) -> Weights:
    w: Weights = {"embed.tokens": s["model.shared.weight"],
                  "final_logits_bias": s["final_logits_bias"].reshape(-1)}
    if not spec.tied_head:
        w["lm_head.w"] = np.ascontiguousarray(s["lm_head.weight"].T)
    for side, n_layers in (("enc", spec.encoder_layers), ("dec", spec.decoder_layers)):
        stack = "model.encoder" if side == "enc" else "model.decoder"
        if side == "dec" and f"{stack}.embed_tokens.weight" in s and not np.array_equal(
                s[f"{stack}.embed_tokens.weight"], s["model.shared.weight"]):
            raise UnsupportedModelError("separate decoder embeddings are not supported yet")
        w[f"{side}.pos"] = s[f"{stack}.embed_positions.weight"]
        if spec.embedding_norm:
            _norm(s, f"{stack}.layernorm_embedding", w, f"{side}.emb_norm", True)
        if spec.final_norm:
            _norm(s, f"{stack}.layer_norm", w, f"{side}.final_norm", True)
        for i in range(n_layers):
            layer = f"{stack}.layers.{i}"
            for p, hf in zip("qkvo", ("q_proj", "k_proj", "v_proj", "out_proj")):
                _linear(s, f"{layer}.self_attn.{hf}", w, f"{side}.{i}.self.{p}", True)
                if side == "dec":
                    _linear(s, f"{layer}.encoder_attn.{hf}", w, f"dec.{i}.cross.{p}", True)
            _norm(s, f"{layer}.self_attn_layer_norm", w, f"{side}.{i}.self_norm", True)
            if side == "dec":
                _norm(s, f"{layer}.encoder_attn_layer_norm", w, f"dec.{i}.cross_norm", True)
            _linear(s, f"{layer}.fc1", w, f"{side}.{i}.ffn.fc1", True)
            _linear(s, f"{layer}.fc2", w, f"{side}.{i}.ffn.fc2", True)
            _norm(s, f"{layer}.final_layer_norm", w, f"{side}.{i}.ffn_norm", True)
    return w
