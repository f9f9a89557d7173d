"""Transformer building blocks emitted as ONNX nodes, parameterised by ArchSpec:
norms, attention, feed-forward, positions. Shapes: hidden [B, n, d]; heads
[B, H, n, head_dim]."""
from __future__ import annotations

import math

import numpy as np
from onnx import TensorProto

from edgeseq.arch import Activation, ArchSpec, Norm
from .onnx_builder import MS_DOMAIN, GraphBuilder
from .weight_formats import LinearEmitter

NEG_INF = -1e9  # additive mask; exp(-1e9 - max) is exactly 0 in float32


class Blocks:
    def __init__(self, spec: ArchSpec, emitter: LinearEmitter):
        self.spec = spec
        self.emit = emitter

    def linear(self, g: GraphBuilder, x: str, name: str, bias: bool | None = None) -> str:
        has_bias = self.spec.linear_bias if bias is None else bias
        return self.emit.linear(g, x, name, has_bias)

    def norm(self, g: GraphBuilder, x: str, name: str) -> str:
        s = self.spec
        if s.norm == Norm.LAYER:
            return g.op("LayerNormalization", x, g.weight(f"{name}.w"), g.weight(f"{name}.b"),
                        axis=-1, epsilon=s.norm_eps)
        # T5 RMS norm: x / sqrt(mean(x^2) + eps) * w, as onnxruntime's fused kernel
        # (a contrib op in the default domain; the decomposed form stays 5 kernels).
        return g.op("SimplifiedLayerNormalization", x, g.weight(f"{name}.w"), axis=-1,
                    epsilon=s.norm_eps)

    def activation(self, g: GraphBuilder, x: str) -> str:
        act = self.spec.activation
        if act == Activation.RELU:
            return g.op("Relu", x)
        if act == Activation.GELU:
            return g.op("Gelu", x)
        if act == Activation.GELU_TANH:
            return g.op("Gelu", x, approximate="tanh")
        return g.op("Mul", x, g.op("Sigmoid", x))

    def ffn(self, g: GraphBuilder, x: str, prefix: str) -> str:
        h = self.activation(g, self.linear(g, x, f"{prefix}.fc1"))
        if self.spec.gated_ffn:
            h = g.op("Mul", h, self.linear(g, x, f"{prefix}.gate"))
        return self.linear(g, h, f"{prefix}.fc2")

    def split_heads(self, g: GraphBuilder, x: str) -> str:
        """[B, n, inner] -> [B, H, n, head_dim]."""
        s = self.spec
        shaped = g.op("Reshape", x, g.const([0, 0, s.num_heads, s.head_dim]))
        return g.op("Transpose", shaped, perm=[0, 2, 1, 3])

    def fused(self, g: GraphBuilder, x: str, prefix: str, parts: str) -> list[str]:
        """Project x with the concatenated weights of `parts` (e.g. "qkv") in one matmul,
        then split: one kernel and one pass over the activations instead of three."""
        fused = f"{prefix}.{parts}"
        store = g.store
        if f"{fused}.w" not in store:
            store.put(f"{fused}.w", np.concatenate(
                [store.get(f"{prefix}.{p}.w") for p in parts], axis=1))
            if self.spec.linear_bias:
                zeros = np.zeros(self.spec.inner_dim, np.float32)
                store.put(f"{fused}.b", np.concatenate(
                    [store.get(f"{prefix}.{p}.b") if f"{prefix}.{p}.b" in store else zeros
                     for p in parts]))
        y = self.linear(g, x, fused)
        return g.op("Split", y, g.const([self.spec.inner_dim] * len(parts)), axis=-1,
                    outputs=len(parts))

    def attention(self, g: GraphBuilder, q: str, keys: str, values: str, bias: str,
                  past: tuple[str, str] | None = None) -> list[str]:
        """onnxruntime's fused MultiHeadAttention. q [B, n, inner]; keys/values either
        [B, m, inner] (with past [B, H, p, hd] concatenated inside) or [B, H, m, hd];
        bias [B|1, H|1, n, m]. Returns [out [B, n, inner]] (+ present K, V with past)."""
        inputs = [q, keys, values, "", "", bias] + (list(past) if past else [])
        return g.op("MultiHeadAttention", *inputs, outputs=3 if past else 1,
                    domain=MS_DOMAIN, num_heads=self.spec.num_heads,
                    scale=float(self.spec.attention_scale))

    def residual(self, g: GraphBuilder, x: str, norm_name: str, sublayer) -> str:
        """Pre-norm: x + f(N(x)). Post-norm (BART, Marian): N(x + f(x))."""
        if self.spec.pre_norm:
            return g.op("Add", x, sublayer(self.norm(g, x, norm_name)))
        return self.norm(g, g.op("Add", x, sublayer(x)), norm_name)

    def scale_embedding(self, g: GraphBuilder, x: str) -> str:
        if self.spec.embed_scale == 1.0:
            return x
        return g.op("Mul", x, g.const(self.spec.embed_scale, np.float32))

    def learned_positions(self, g: GraphBuilder, x: str, table: str, start: str,
                          length: str) -> str:
        """x + table[start + offset : start + length + offset] (Range over scalars)."""
        begin = g.op("Add", start, g.const(self.spec.position_offset))
        end = g.op("Add", begin, length)
        ids = g.op("Range", begin, end, g.const(1))
        return g.op("Add", x, g.op("Gather", g.weight(table), ids))

    def relative_bias(self, g: GraphBuilder, rel: str, table: str) -> str:
        """T5 bias [1, H, q, k] from rel = k_pos - q_pos via a per-distance lookup table."""
        md = self.spec.rel_max_distance
        clipped = g.op("Min", g.op("Max", rel, g.const(-md)), g.const(md))
        rows = g.op("Gather", g.weight(table), g.op("Add", clipped, g.const(md)))
        return g.op("Unsqueeze", g.op("Transpose", rows, perm=[2, 0, 1]), g.const([0]))

    def padding_bias(self, g: GraphBuilder, mask: str) -> str:
        """int64 mask [B, S] (1 = token) -> additive float bias [B, 1, 1, S]."""
        m = g.op("Cast", mask, to=TensorProto.FLOAT)
        bias = g.op("Mul", g.op("Sub", g.const(1.0, np.float32), m), g.const(NEG_INF, np.float32))
        return g.op("Unsqueeze", bias, g.const([1, 2]))


def t5_bucket(relative: np.ndarray, bidirectional: bool, buckets: int, max_distance: int):
    """transformers' T5 _relative_position_bucket, in numpy."""
    out = np.zeros_like(relative)
    if bidirectional:
        buckets //= 2
        out += (relative > 0).astype(relative.dtype) * buckets
        relative = np.abs(relative)
    else:
        relative = -np.minimum(relative, 0)
    max_exact = buckets // 2
    small = relative < max_exact
    # float32 like transformers, so bucket edges land on the same integers
    ratio = np.maximum(relative, 1).astype(np.float32) / np.float32(max_exact)
    scaled = (np.log(ratio) / np.float32(math.log(max_distance / max_exact))
              * np.float32(buckets - max_exact))
    large = np.minimum(max_exact + scaled.astype(relative.dtype), buckets - 1)
    return out + np.where(small, relative, large)


def t5_distance_table(weight: np.ndarray, bidirectional: bool, buckets: int,
                      max_distance: int) -> np.ndarray:
    """[2 * max_distance + 1, H]: the bias for every distance; buckets saturate beyond."""
    rel = np.arange(-max_distance, max_distance + 1, dtype=np.int64)
    return np.ascontiguousarray(weight[t5_bucket(rel, bidirectional, buckets, max_distance)])
