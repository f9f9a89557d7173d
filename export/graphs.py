"""The two graphs of a text package. The encoder also emits every decoder layer's
cross-attention K/V, so they are computed once per input. The decoder takes any number
of new tokens after `past_length` cached ones, runs the layers that `layer_run` selects
(each layer sits in an If node: a skipped layer costs one If and passes its input on),
and returns logits plus only the new K/V, which the runtime writes into its preallocated
cache at the cursor."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto

from edgeseq import names
from edgeseq.arch import ArchSpec, Positions
from .blocks import Blocks, t5_distance_table
from .exit_heads import exit_head_key
from .onnx_builder import GraphBuilder, WeightStore
from .row_invariant import pad_attention_queries
from .weight_formats import LinearEmitter, Quant

FLOAT, INT64, BOOL = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL
# a graph without initializers, and the names of the stored weights it uses
BuiltGraph = tuple[onnx.ModelProto, list[str]]


def _prepare_position_tables(spec: ArchSpec, store: WeightStore) -> None:
    if spec.positions != Positions.RELATIVE:
        return
    for side, bidirectional in (("enc", True), ("dec", False)):
        if f"{side}.rel_table" not in store:
            store.put(f"{side}.rel_table", t5_distance_table(
                store.get(f"{side}.rel_bias"), bidirectional, spec.rel_buckets,
                spec.rel_max_distance))


def _embed(b: Blocks, g: GraphBuilder, ids: str, side: str, start: str) -> str:
    x = b.scale_embedding(g, b.emit.embed(g, ids))
    if b.spec.positions != Positions.RELATIVE:
        length = g.op("Squeeze", g.op("Slice", g.op("Shape", ids), g.const([1]), g.const([2])),
                      g.const([0]))
        x = b.learned_positions(g, x, f"{side}.pos", start, length)
    if b.spec.embedding_norm:
        x = b.norm(g, x, f"{side}.emb_norm")
    return x


def build_encoder(spec: ArchSpec, store: WeightStore, quant: Quant,
                  int8_rows: bool = True) -> BuiltGraph:
    g = GraphBuilder(store)
    b = Blocks(spec, LinearEmitter(quant, many_rows=int8_rows))
    _prepare_position_tables(spec, store)
    ids = g.add_input(names.ENC_INPUT_IDS, INT64, ["batch", "source"])
    mask = g.add_input(names.ENC_ATTENTION_MASK, INT64, ["batch", "source"])
    x = _embed(b, g, ids, "enc", g.const(0))
    bias = b.padding_bias(g, mask)
    if spec.positions == Positions.RELATIVE:
        length = g.op("Squeeze", g.op("Slice", g.op("Shape", ids), g.const([1]), g.const([2])),
                      g.const([0]))
        pos = g.op("Range", g.const(0), length, g.const(1))
        rel = g.op("Sub", g.op("Unsqueeze", pos, g.const([0])), g.op("Unsqueeze", pos, g.const([1])))
        bias = g.op("Add", b.relative_bias(g, rel, "enc.rel_table"), bias)
    # MultiHeadAttention wants the bias's query axis spelled out: [B, H|1, S, S]
    source = g.op("Slice", g.op("Shape", ids), g.const([1]), g.const([2]))
    bias = g.op("Expand", bias, g.op("Concat", g.const([1, 1]), source, g.const([1]), axis=0))
    for i in range(spec.encoder_layers):
        def self_attention(h: str, i: int = i) -> str:
            q, k, v = b.fused(g, h, f"enc.{i}.self", "qkv")
            return b.linear(g, b.attention(g, q, k, v, bias), f"enc.{i}.self.o")
        x = b.residual(g, x, f"enc.{i}.self_norm", self_attention)
        x = b.residual(g, x, f"enc.{i}.ffn_norm", lambda h, i=i: b.ffn(g, h, f"enc.{i}.ffn"))
    if spec.final_norm:
        x = b.norm(g, x, "enc.final_norm")
    for i in range(spec.decoder_layers):
        k, v = (b.split_heads(g, t) for t in b.fused(g, x, f"dec.{i}.cross", "kv"))
        g.add_output(k, names.cross_key(i), FLOAT, ["batch", spec.num_heads, "source", spec.head_dim])
        g.add_output(v, names.cross_value(i), FLOAT, ["batch", spec.num_heads, "source", spec.head_dim])
    return g.model("edgeseq_encoder"), list(g.used_weights)


def _self_bias(b: Blocks, g: GraphBuilder, past: str, new: str) -> str:
    """Causal bias [1, H|1, new, past + new] for queries at past .. past + new - 1."""
    total = g.op("Add", past, new)
    q_pos = g.op("Range", past, total, g.const(1))
    k_pos = g.op("Range", g.const(0), total, g.const(1))
    rel = g.op("Sub", g.op("Unsqueeze", k_pos, g.const([0])), g.op("Unsqueeze", q_pos, g.const([1])))
    causal = g.op("Where", g.op("Greater", rel, g.const(0)), g.const(-1e9, np.float32),
                  g.const(0.0, np.float32))
    causal = g.op("Unsqueeze", causal, g.const([0, 1]))
    if b.spec.positions != Positions.RELATIVE:
        return causal
    return g.op("Add", b.relative_bias(g, rel, "dec.rel_table"), causal)


def _decoder_layer(b: Blocks, g: GraphBuilder, x: str, i: int, past: tuple[str, str],
                   cross: tuple[str, str], self_bias: str, enc_bias: str,
                   past_len: str) -> list[str]:
    """One decoder layer on its branch builder; returns [hidden, new_key, new_value]."""
    new_kv: list[str] = []

    def self_attention(h: str) -> str:
        q, k, v = b.fused(g, h, f"dec.{i}.self", "qkv")
        out, keys, values = b.attention(g, q, k, v, self_bias, past)
        # the cache already holds the past: hand back only this step's positions
        for present in (keys, values):
            new_kv.append(g.op("Slice", present, g.op("Unsqueeze", past_len, g.const([0])),
                               g.const([2 ** 62]), g.const([2])))
        return b.linear(g, out, f"dec.{i}.self.o")

    def cross_attention(h: str) -> str:
        q = b.linear(g, h, f"dec.{i}.cross.q")
        return b.linear(g, b.attention(g, q, cross[0], cross[1], enc_bias), f"dec.{i}.cross.o")

    x = b.residual(g, x, f"dec.{i}.self_norm", self_attention)
    x = b.residual(g, x, f"dec.{i}.cross_norm", cross_attention)
    x = b.residual(g, x, f"dec.{i}.ffn_norm", lambda h: b.ffn(g, h, f"dec.{i}.ffn"))
    return [x, *new_kv]


def _skipped_layer(b: Blocks, g: GraphBuilder, x: str, i: int, fill: str,
                   kv_shape: str) -> list[str]:
    """A skipped layer passes x on; its K/V for the new tokens are either projected from
    x (state propagation, so later tokens attend to something consistent) or zeros."""
    filled, empty = g.sub(), g.sub()
    h = b.norm(filled, x, f"dec.{i}.self_norm") if b.spec.pre_norm else x
    _, k, v = b.fused(filled, h, f"dec.{i}.self", "qkv")  # q unused: no second K/V copy
    for value in (k, v):
        filled.add_output(b.split_heads(filled, value), filled.fresh("fill_out"))
    zeros = empty.op("ConstantOfShape", kv_shape,
                     value=onnx.numpy_helper.from_array(np.zeros(1, np.float32)))
    for _ in range(2):
        empty.add_output(zeros, empty.fresh("zero_out"))
    kv = g.op("If", fill, outputs=2, then_branch=filled.graph(f"fill_{i}"),
              else_branch=empty.graph(f"zero_{i}"))
    return [x, *kv]


def build_decoder(spec: ArchSpec, store: WeightStore, quant: Quant,
                  gated: bool = True, row_invariant: bool = False) -> BuiltGraph:
    """gated=False inlines every layer without If nodes (no layer skipping); it exists
    to measure what the gating costs (bench/layer_gating.py). row_invariant: attention
    queries padded to two rows or more (export/row_invariant.py)."""
    g = GraphBuilder(store)
    b = Blocks(spec, LinearEmitter(quant))
    _prepare_position_tables(spec, store)
    heads, hd = spec.num_heads, spec.head_dim
    ids = g.add_input(names.DEC_INPUT_IDS, INT64, ["batch", "new"])
    past_len = g.add_input(names.DEC_PAST_LENGTH, INT64, [])
    enc_bias = g.add_input(names.DEC_ENCODER_BIAS, FLOAT, ["batch", 1, 1, "source"])
    run = g.add_input(names.DEC_LAYER_RUN, BOOL, [spec.decoder_layers])
    fill = g.add_input(names.DEC_LAYER_FILL, BOOL, [spec.decoder_layers])
    hidden_in = g.add_input(names.DEC_HIDDEN_IN, FLOAT, ["batch", "new", spec.d_model])
    use_hidden = g.add_input(names.DEC_USE_HIDDEN, BOOL, [])
    past, cross = [], []
    for i in range(spec.decoder_layers):
        past.append((g.add_input(names.past_key(i), FLOAT, ["batch", heads, "past", hd]),
                     g.add_input(names.past_value(i), FLOAT, ["batch", heads, "past", hd])))
    for i in range(spec.decoder_layers):
        cross.append((g.add_input(names.cross_key(i), FLOAT, ["batch", heads, "source", hd]),
                      g.add_input(names.cross_value(i), FLOAT, ["batch", heads, "source", hd])))
    shape = g.op("Shape", ids)
    new = g.op("Squeeze", g.op("Slice", shape, g.const([1]), g.const([2])), g.const([0]))
    kv_shape = g.op("Concat", g.op("Slice", shape, g.const([0]), g.const([1])),
                    g.const([heads]), g.op("Slice", shape, g.const([1]), g.const([2])),
                    g.const([hd]), axis=0)
    embedded, given = g.sub(), g.sub()
    embedded.add_output(_embed(b, embedded, ids, "dec", past_len), embedded.fresh("embedded"))
    given.add_output(hidden_in, given.fresh("given"))
    x = g.op("If", use_hidden, then_branch=given.graph("hidden_given"),
             else_branch=embedded.graph("embed"))
    self_bias = _self_bias(b, g, past_len, new)
    # MultiHeadAttention wants the bias's query axis spelled out: [B, 1, new, S]
    bias_shape = g.op("Concat", g.const([1, 1]), g.op("Unsqueeze", new, g.const([0])),
                      g.const([1]), axis=0)
    enc_bias = g.op("Expand", enc_bias, bias_shape)
    for i in range(spec.decoder_layers):
        if not gated:
            x, k, v = _decoder_layer(b, g, x, i, past[i], cross[i], self_bias, enc_bias, past_len)
            g.add_output(k, names.new_key(i), FLOAT, ["batch", heads, "new", hd])
            g.add_output(v, names.new_value(i), FLOAT, ["batch", heads, "new", hd])
            continue
        ran, skipped = g.sub(), g.sub()
        for value in _decoder_layer(b, ran, x, i, past[i], cross[i], self_bias, enc_bias, past_len):
            ran.add_output(value, ran.fresh("run_out"))
        layer_fill = skipped.op("Gather", fill, skipped.const(i))
        for value in _skipped_layer(b, skipped, x, i, layer_fill, kv_shape):
            skipped.add_output(value, skipped.fresh("skip_out"))
        cond = g.op("Gather", run, g.const(i))
        x, k, v = g.op("If", cond, outputs=3, then_branch=ran.graph(f"layer_{i}"),
                       else_branch=skipped.graph(f"skip_{i}"))
        g.add_output(k, names.new_key(i), FLOAT, ["batch", heads, "new", hd])
        g.add_output(v, names.new_value(i), FLOAT, ["batch", heads, "new", hd])
    g.add_output(x, names.DEC_HIDDEN_OUT, FLOAT, ["batch", "new", spec.d_model])
    if spec.final_norm:
        x = b.norm(g, x, "dec.final_norm")
    exits = [k for k in range(1, spec.decoder_layers) if f"{exit_head_key(k)}.w" in store]
    logits = _exit_heads(b, g, x, run, exits, spec) if exits else _model_head(b, g, x, spec)
    g.add_output(logits, names.DEC_LOGITS, FLOAT, ["batch", "new", spec.vocab_size])
    model = g.model("edgeseq_decoder")
    if row_invariant:
        pad_attention_queries(model)
    return model, list(g.used_weights)


def _model_head(b: Blocks, g: GraphBuilder, x: str, spec: ArchSpec) -> str:
    if spec.head_scale != 1.0:
        x = g.op("Mul", x, g.const(spec.head_scale, np.float32))
    logits = b.emit.tied_head(g, x) if spec.tied_head else b.emit.untied_head(g, x)
    if spec.final_logits_bias:
        logits = g.op("Add", logits, g.weight("final_logits_bias"))
    return logits


def _exit_heads(b: Blocks, g: GraphBuilder, x: str, run: str, exits: list[int],
                spec: ArchSpec) -> str:
    """Logits through the head of the exit the pass ended at (the last layer that ran),
    else the model's own head. One If per head, side by side: the chosen one returns
    [B, n, vocab], the others an empty [B, n, 0], and a Concat joins them, so only one
    projection runs. Not nested: onnxruntime ran the quantized heads of Ifs nested two
    or more deep about 10x slower (measured on Whisper base, 2026-11)."""
    ran = g.op("Cast", run, to=TensorProto.FLOAT)
    ends_at = []
    for k in exits:  # "layer k ran and none after it": ran[k-1] - sum(ran[k:]) > 0.5
        after = g.op("MatMul", g.op("Slice", ran, g.const([k]), g.const([spec.decoder_layers]),
                                    g.const([0])),
                     g.const(np.ones(spec.decoder_layers - k, np.float32), np.float32))
        ends_at.append(g.op("Greater", g.op("Sub", g.op("Gather", ran, g.const(k - 1)), after),
                            g.const(0.5, np.float32)))
    exited = g.op("MatMul", g.op("Cast", g.op("Concat", *[g.op("Unsqueeze", c, g.const([0]))
                                                           for c in ends_at], axis=0),
                                 to=TensorProto.FLOAT),
                  g.const(np.ones(len(exits), np.float32), np.float32))
    own_head = g.op("Greater", g.const(0.5, np.float32), exited)  # no exit matched
    parts = [_head_if(b, g, x, cond, f"exit_head_{k}", k) for k, cond in zip(exits, ends_at)]
    parts.append(_head_if(b, g, x, own_head, "model_head", None))
    return g.op("Concat", *parts, axis=-1)


def _head_if(b: Blocks, g: GraphBuilder, x: str, cond: str, name: str, k: int | None) -> str:
    """If cond: the logits of exit k's head (k None: the model's head); else [B, n, 0]."""
    chosen, skipped = g.sub(), g.sub()
    if k is None:
        logits = _model_head(b, chosen, x, b.spec)
    else:
        logits = b.emit.exit_head(chosen, x, exit_head_key(k))
        if f"{exit_head_key(k)}.vocab" in g.store:
            logits = _scatter_vocab(chosen, logits, g.store.get(f"{exit_head_key(k)}.vocab"),
                                    b.spec.vocab_size)
    chosen.add_output(logits, chosen.fresh("head_out"))
    skipped.add_output(skipped.op("Slice", x, skipped.const([0]), skipped.const([0]),
                                  skipped.const([2])), skipped.fresh("no_head"))
    return g.op("If", cond, then_branch=chosen.graph(name), else_branch=skipped.graph(f"not_{name}"))


def _scatter_vocab(g: GraphBuilder, logits: str, ids: np.ndarray, vocab: int) -> str:
    """[B, n, N] logits of a draft head over tokens `ids` -> [B, n, vocab], -1e9 elsewhere."""
    shape = g.op("Shape", logits)
    full = g.op("Concat", g.op("Slice", shape, g.const([0]), g.const([2])), g.const([vocab]), axis=0)
    floor = g.op("ConstantOfShape", full, value=onnx.numpy_helper.from_array(
        np.full(1, -1e9, np.float32)))
    index = g.op("Expand", g.const(ids), shape)
    return g.op("ScatterElements", floor, index, logits, axis=2)
