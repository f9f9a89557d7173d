"""How a linear layer's weight is stored and multiplied, per quantization:
fp32 MatMul; fp16 storage cast up at load; int8 and int4 block-wise weights through
onnxruntime's MatMulNBits with int8 compute (accuracy_level 4).

Why MatMulNBits for int8 too: it quantizes activations per row and per block, so a row's
result does not depend on the other rows in the call. DynamicQuantizeMatMul quantizes the
whole activation tensor with one scale, so verifying k+1 draft tokens in one pass would
give different logits than decoding them one by one, and greedy speculative decoding
would stop being token-identical to plain greedy decoding.

Encoders multiply many rows per call (every source position, 1,500 frames for Whisper),
and there onnxruntime's 8-bit MatMulNBits costs about one single-row product per row
(measured here, 512 x 2048, 1 thread: 1 row 23 us, 25 rows 277 us, fp32 337 us). So an int8
package's encoder quantizes each row of activations to 8 bits itself (its own scale, so
a row's result never depends on the others in the batch) and multiplies with per-column
int8 weights in MatMulIntegerToFloat, MLAS's integer GEMM: 25 rows 97 us, 1,500 rows
4.3 vs 16.0 ms. For one row it is slower (32 vs 23 us): decoders keep MatMulNBits.
4-bit MatMulNBits is no faster for many rows, so int4 packages' encoders are int8 too:
t5-small shape, 64 input tokens, first token 20.2 -> 9.5 ms for 43 -> 51 MB on disk
(bench/decode.py, engines edgeseq-int4-blocks and edgeseq-int4).

The token embedding shares the LM head's quantized [vocab, d] rows: the lookup is a
row gather plus dequantization. The gather reads them under a second initializer name
(an alias of the same bytes in weights.bin): onnxruntime maps each initializer on its
own, prepacks the head's copy and then frees its mapping, while the gather's mapping
only ever touches the rows of the tokens looked up. With one shared name the whole
table stayed mapped next to its packed copy (t5-small int8: peak RSS 168 -> 149 MB)."""
from __future__ import annotations

import enum

import numpy as np
from onnx import TensorProto

from .onnx_builder import MS_DOMAIN, GraphBuilder

INT4_BLOCK = 32
ROW_ZERO_POINT = 128  # uint8 rows: the integer GEMM's fast path is unsigned x signed


class Quant(str, enum.Enum):
    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"
    INT4 = "int4"


def int8_block(k: int) -> int:
    """Larger blocks read faster (fewer scales); tiny layers keep the smallest block."""
    return 128 if k >= 128 else 32


def quantize_int8_blocks(w: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """MatMulNBits 8-bit layout for a [K, N] weight, symmetric (implicit zero point 128):
    uint8 [N, blocks, block], scales float [N * blocks]."""
    cols = _blocked_columns(w, block)
    scale = np.abs(cols).max(axis=2) / 127.0
    scale = np.where(scale == 0, 1.0, scale).astype(np.float32)
    q = np.clip(np.rint(cols / scale[..., None]), -127, 127) + 128
    return q.astype(np.uint8), scale.reshape(-1)


def quantize_int8_columns(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column symmetric int8 for a [K, N] weight: int8 [K, N], scales float [N]."""
    scale = np.abs(w).max(axis=0) / 127.0
    scale = np.where(scale == 0, 1.0, scale).astype(np.float32)
    return np.clip(np.rint(w / scale), -127, 127).astype(np.int8), scale


def _blocked_columns(w: np.ndarray, block: int) -> np.ndarray:
    k, n = w.shape
    blocks = -(-k // block)
    padded = np.zeros((blocks * block, n), np.float32)
    padded[:k] = w
    return padded.T.reshape(n, blocks, block)


def quantize_int4_blocks(w: np.ndarray, block: int = INT4_BLOCK):
    """MatMulNBits 4-bit layout for a [K, N] weight: packed uint8 [N, blocks, block/2],
    scales float [N * blocks], zero points uint8 [N * ceil(blocks / 2)]."""
    cols = _blocked_columns(w, block)
    n, blocks = cols.shape[:2]
    lo, hi = np.minimum(cols.min(axis=2), 0.0), np.maximum(cols.max(axis=2), 0.0)
    scale = (hi - lo) / 15.0  # keeps 0 exactly representable
    scale = np.where(scale == 0, 1.0, scale).astype(np.float32)
    zero = np.clip(np.rint(-lo / scale), 0, 15).astype(np.uint8)
    q = np.clip(np.rint(cols / scale[..., None]) + zero[..., None], 0, 15).astype(np.uint8)
    packed = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)
    if blocks % 2:
        zero = np.concatenate([zero, np.zeros((n, 1), np.uint8)], axis=1)
    zp_packed = (zero[:, 0::2] | (zero[:, 1::2] << 4)).astype(np.uint8).reshape(-1)
    return packed, scale.reshape(-1), zp_packed


def dequantize_int8_blocks(q: np.ndarray, scale: np.ndarray, k: int) -> np.ndarray:
    n, blocks, block = q.shape
    w = (q.astype(np.float32) - 128) * scale.reshape(n, blocks)[..., None]
    return w.reshape(n, blocks * block)[:, :k].T


def dequantize_int4_blocks(packed, scale, zp_packed, k: int, block: int = INT4_BLOCK):
    """Reference inverse of quantize_int4_blocks (used by tests)."""
    n, blocks, _ = packed.shape
    q = np.empty((n, blocks, block), np.float32)
    q[..., 0::2], q[..., 1::2] = packed & 15, packed >> 4
    zp = np.stack([zp_packed & 15, zp_packed >> 4], axis=1).reshape(n, -1)[:, :blocks]
    w = (q - zp[..., None]) * scale.reshape(n, blocks)[..., None]
    return w.reshape(n, blocks * block)[:, :k].T


class LinearEmitter:
    """Emits x @ W (+ b) for canonical weight `name` in the package's format.
    many_rows: the graph multiplies many rows per call (an encoder); int8 and int4
    packages' weights then go through per-row int8 products (see the module's notes)."""

    def __init__(self, quant: Quant, many_rows: bool = False):
        self.quant = quant
        self.row_int8 = many_rows and quant in (Quant.INT8, Quant.INT4)
        # an input's row quantization, shared by the linears that read it (q, k, v; gate, fc1)
        self._rows: dict[str, tuple[str, str, str]] = {}

    def linear(self, g: GraphBuilder, x: str, name: str, bias: bool) -> str:
        if self.row_int8:
            y = self._row_int8_matmul(g, x, name)
        else:
            y = self._matmul(g, x, name, self.quant)
        if bias:
            y = g.op("Add", y, g.weight(f"{name}.b"))
        return y

    @staticmethod
    def stored(g: GraphBuilder, name: str, quant: Quant) -> list[str]:
        """Names of the stored tensors of weight `name` in `quant`, created on first use."""
        store, w_key = g.store, f"{name}.w"
        if quant == Quant.FP32:
            return [w_key]
        keys = {Quant.FP16: [f"{name}.w_fp16"],
                Quant.INT8: [f"{name}.w_int8", f"{name}.w_int8_scale"],
                Quant.INT4: [f"{name}.w_int4", f"{name}.w_int4_scale", f"{name}.w_int4_zp"]}[quant]
        if keys[0] not in store:
            w = store.get(w_key)
            values = {Quant.FP16: lambda: [w.astype(np.float16)],
                      Quant.INT8: lambda: list(quantize_int8_blocks(w, int8_block(w.shape[0]))),
                      Quant.INT4: lambda: list(quantize_int4_blocks(w))}[quant]()
            for key, value in zip(keys, values):
                store.put(key, value)
        return keys

    def _row_int8_matmul(self, g: GraphBuilder, x: str, name: str) -> str:
        q_key, scale_key = f"{name}.w_int8c", f"{name}.w_int8c_scale"
        if q_key not in g.store:
            q, scale = quantize_int8_columns(g.store.get(f"{name}.w"))
            g.store.put(q_key, q)
            g.store.put(scale_key, scale)
        k, n = g.store.get(q_key).shape
        rows, row_scale, leading = self._quantized_rows(g, x, k)
        y = g.op("MatMulIntegerToFloat", rows, g.weight(q_key), row_scale, g.weight(scale_key),
                 g.const(ROW_ZERO_POINT, np.uint8), domain=MS_DOMAIN)
        return g.op("Reshape", y, g.op("Concat", leading, g.const([n]), axis=0))

    def _quantized_rows(self, g: GraphBuilder, x: str, k: int) -> tuple[str, str, str]:
        """x [..., K] as uint8 rows [R, K] (zero point 128, a scale per row: max |x| / 127),
        the scales [R, 1], and x's leading dimensions."""
        if x not in self._rows:
            rows = g.op("Reshape", x, g.const([-1, k]))
            peak = g.op("ReduceMax", g.op("Abs", rows), g.const([1]), keepdims=0)
            scale = g.op("Max", g.op("Mul", peak, g.const(1 / 127, np.float32)),
                         g.const(1e-30, np.float32))  # an all-zero row keeps a usable scale
            zero = g.op("Expand", g.const(ROW_ZERO_POINT, np.uint8), g.op("Shape", scale))
            quantized = g.op("QuantizeLinear", rows, scale, zero, axis=0)
            leading = g.op("Slice", g.op("Shape", x), g.const([0]), g.const([-1]))
            self._rows[x] = quantized, g.op("Unsqueeze", scale, g.const([1])), leading
        return self._rows[x]

    def _matmul(self, g: GraphBuilder, x: str, name: str, quant: Quant) -> str:
        keys = [g.weight(k) for k in self.stored(g, name, quant)]
        if quant == Quant.FP32:
            return g.op("MatMul", x, keys[0])
        if quant == Quant.FP16:
            return g.op("MatMul", x, g.op("Cast", keys[0], to=TensorProto.FLOAT))
        k, n = g.store.get(f"{name}.w").shape
        bits, block = (8, int8_block(k)) if quant == Quant.INT8 else (4, INT4_BLOCK)
        return g.op("MatMulNBits", x, *keys, domain=MS_DOMAIN, K=k, N=n, bits=bits,
                    block_size=block, accuracy_level=4)

    # The token embedding: [vocab, d] in the checkpoint; stored as the head's [d, vocab].
    def _embedding_quant(self) -> Quant:
        # int4 packages keep the embedding / LM head in int8: it is one tensor for both.
        return Quant.INT8 if self.quant == Quant.INT4 else self.quant

    @staticmethod
    def prepare_embedding(g: GraphBuilder) -> None:
        store = g.store
        if "embed.tokens.w" not in store:
            store.put("embed.tokens.w", np.ascontiguousarray(store.get("embed.tokens").T))

    def embed(self, g: GraphBuilder, ids: str) -> str:
        """ids int64 [B, n] -> float32 [B, n, d]."""
        self.prepare_embedding(g)
        quant = self._embedding_quant()
        keys = [g.weight(g.store.alias(f"{k}.rows", k)) for k in self.stored(g, "embed.tokens", quant)]
        if quant != Quant.INT8:  # fp32 / fp16 [d, vocab]: gather columns
            rows = g.op("Transpose", g.op("Gather", keys[0], ids, axis=1), perm=[1, 2, 0])
            return rows if quant == Quant.FP32 else g.op("Cast", rows, to=TensorProto.FLOAT)
        vocab, blocks, block = g.store.get(keys[0]).shape
        d = g.store.get("embed.tokens.w").shape[0]
        table = g.op("Reshape", keys[1], g.const([vocab, blocks]))  # same stored scales
        rows = g.op("Sub", g.op("Cast", g.op("Gather", keys[0], ids), to=TensorProto.FLOAT),
                    g.const(128.0, np.float32))
        scales = g.op("Unsqueeze", g.op("Gather", table, ids), g.const([-1]))
        flat = g.op("Reshape", g.op("Mul", rows, scales), g.const([0, 0, blocks * block]))
        return flat if blocks * block == d else g.op(
            "Slice", flat, g.const([0]), g.const([d]), g.const([2]))

    def tied_head(self, g: GraphBuilder, h: str) -> str:
        self.prepare_embedding(g)
        return self._matmul(g, h, "embed.tokens", self._embedding_quant())

    def untied_head(self, g: GraphBuilder, h: str) -> str:
        return self._matmul(g, h, "lm_head", self._embedding_quant())

    def exit_head(self, g: GraphBuilder, h: str, name: str) -> str:
        """A separate early-exit head, stored like the LM head ([d, vocab])."""
        return self._matmul(g, h, name, self._embedding_quant())
