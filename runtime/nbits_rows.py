"""Whether onnxruntime's MatMulNBits computes a row alone as it computes the same row
among others, on this CPU, and what a decoder does about it.

Greedy speculation is bitwise exact only where every row of a k-token verify pass equals
the one-token pass at its position (export/row_invariant.py). Some CPUs' kernels take
rows in pairs and the last row of an odd count through a one-row kernel that rounds
differently: on an AMD EPYC with AVX-512 VNNI (Zen 4), 8-bit and 4-bit products with int8
compute and blocks of 128 gave a lone row ~4e-6 away from the same row among 2, 3 or 9,
while a row's result did not depend on the row it was paired with, and blocks of 32 or 64
computed every row alike; the default package's one-token passes and the rows of its
verify passes then differed in their logits, and input drafting gave 299 of 300 JFLEG
sentences as plain greedy did. Which kernel runs is MLAS's dispatch (by CPU, bits and
block size), not a flag the runtime can read, so it asks onnxruntime: one product of 4
rows against each row alone and against the rows in other pairs (`row_grouping`), a
session of a few KB per kind of product a decoder holds (`nbits_kinds`).

Where rows are exact only in pairs, small drafting decoders multiply in fp32
(runtime/decoder_products.py) and the runner gives other decoders' passes an even number
of rows (runtime/decoder.py, `even_rows`; `wants_even_rows` says when): one more token, a
copy of the last, that no row before it attends to, its logits and K/V dropped.

The same extra row makes decoders exact whose attention queries are not padded (int4
packages, and packages exported with --no-row-invariant: export/row_invariant.py):
onnxruntime's attention has a one-row kernel, and with an even number of rows no query is
a lone row; their products must then compute rows alike alone or in pairs
(`DecoderRows.even_rows_make_exact`). A tiny int4 T5 here: one-token passes ~1e-5 away
from the same rows of longer passes as they come, bitwise equal with even rows
(tests/test_row_invariant.py)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import onnxruntime as ort

from edgeseq.onnx_wire import (ATTR_I, ATTR_NAME, DATA_TYPE_FLOAT,
                               DATA_TYPE_UINT8, DIM_PARAM, DIM_VALUE, GRAPH_INITIALIZER,
                               GRAPH_INPUT, GRAPH_NAME, GRAPH_NODE, GRAPH_OUTPUT, LENGTH,
                               MODEL_GRAPH, MODEL_OPSET_IMPORT, NODE_ATTRIBUTE, NODE_DOMAIN,
                               NODE_INPUT, NODE_OP_TYPE, NODE_OUTPUT, OPSET_DOMAIN, SHAPE_DIM,
                               TENSOR_DATA_TYPE, TENSOR_DIMS, TENSOR_NAME, TENSOR_RAW_DATA,
                               TENSOR_TYPE_ELEM, TENSOR_TYPE_SHAPE, TYPE_TENSOR, VALUE_INFO_NAME,
                               VALUE_INFO_TYPE, fields_with_extent, length_field,
                               node_attributes, read_node, varint_field)

from .providers import SHARED_POOL
from .rewritten_graph import model_graph

MODEL_IR_VERSION, OPSET_VERSION, ATTR_TYPE, ATTR_TYPE_INT = 1, 2, 20, 2
NBITS, MS_DOMAIN = "MatMulNBits", "com.microsoft"
N = 32      # output columns of the probe's product
ROWS = 4    # two pairs
ALONE, PAIRS = 1, 2  # row_grouping's answers


@dataclass(frozen=True)
class NBitsKind:
    """What decides a MatMulNBits kernel: its bits, block size and accuracy level (4: int8
    activations; 0: fp32)."""
    bits: int
    block: int
    accuracy: int


def row_grouping(kind: NBitsKind, threads: int = 1) -> int | None:
    """ALONE where every row of a 4-row product of `kind` equals that row's product alone
    on this CPU; PAIRS where only rows in pairs do, whatever the row they are paired with;
    None where neither holds, or where onnxruntime cannot run the product (a build
    without it: the package's own graph then says what is wrong when it loads)."""
    rows = np.random.default_rng(0).standard_normal((ROWS, _width(kind))).astype(np.float32)
    try:
        session = ort.InferenceSession(product_model(kind), _options(threads),
                                       providers=["CPUExecutionProvider"])
        together = session.run(None, {"rows": rows})[0]
        alone = [session.run(None, {"rows": rows[i:i + 1]})[0][0] for i in range(ROWS)]
        swapped = session.run(None, {"rows": rows[[0, 2, 1, 3]]})[0][[0, 2, 1, 3]]
    except Exception:  # onnxruntime raises its own untyped errors
        return None
    if all(np.array_equal(a, t) for a, t in zip(alone, together)):
        return ALONE
    return PAIRS if np.array_equal(swapped, together) else None


def wants_even_rows(choice: bool | None, provider: str, drafts: bool,
                    pairs: Callable[[], bool]) -> bool:
    """Whether a decoder's passes get an even number of rows: on the CPU provider where
    rows as they come are not exact and rows in pairs are (`pairs`, asked last since it
    runs onnxruntime), when `choice` (SessionConfig's even_decoder_rows) is True, or is None
    and the package recommends a drafter (`drafts`): the extra row costs plain greedy
    decoding (1.20x-1.23x the time on t5-small-shaped int8 weights, bench/even_rows.py), so
    by default only packages meant to speculate pay it."""
    if choice is False or provider != "cpu":
        return False
    return (choice or drafts) and pairs()


class DecoderRows:
    """How this CPU computes the rows of a decoder graph's products (its serialized bytes),
    asked of onnxruntime at most once however many decisions read it (a load reads it for
    fp32 products and for even rows)."""

    def __init__(self, model: bytes):
        self.model = model

    @cached_property
    def groupings(self) -> set[int | None]:
        return {row_grouping(kind) for kind in nbits_kinds(self.model)}

    @property
    def alone(self) -> bool:
        """Every kind computes a lone row as among others (no products: trivially)."""
        return self.groupings <= {ALONE}

    @property
    def in_pairs(self) -> bool:
        """Rows alike only in pairs (one kind PAIRS, none None): passes want even rows."""
        return PAIRS in self.groupings and None not in self.groupings

    def even_rows_make_exact(self, padded_attention: bool, fp32_products: bool = False) -> bool:
        """Whether passes of an even number of rows make every row exact where passes as
        they come do not: with padded attention (a row-invariant decoder) where the
        products pair rows; with unpadded attention (a lone query row has a kernel of its
        own) wherever the products compute rows alike alone or in pairs (fp32 products
        always do)."""
        if padded_attention:
            return not fp32_products and self.in_pairs
        return fp32_products or None not in self.groupings


def nbits_kinds(model: bytes) -> set[NBitsKind]:
    """The kinds of MatMulNBits a serialized ModelProto's graph holds, If branches included."""
    kinds: set[NBitsKind] = set()
    _collect(model, model_graph(model), kinds)
    return kinds


def _collect(data: bytes, graph: tuple[int, int], kinds: set[NBitsKind]) -> None:
    for n, wire, value, _ in fields_with_extent(data, *graph):
        if n != GRAPH_NODE or wire != LENGTH:
            continue
        node = read_node(data, value)
        ints, inner = node_attributes(data, value)
        for sub in inner:
            _collect(data, sub, kinds)
        if node.op_type == NBITS and node.domain == MS_DOMAIN:
            kinds.add(NBitsKind(ints.get("bits", 4), ints.get("block_size", 0),
                                ints.get("accuracy_level", 0)))


def product_model(kind: NBitsKind) -> bytes:
    """A serialized ModelProto: rows [M, K] -> MatMulNBits of `kind` -> [M, N], K two
    blocks wide, random weights, written without the `onnx` package."""
    rng = np.random.default_rng(0)
    width = _width(kind)
    blocks = width // kind.block
    weights = rng.integers(0, 256, (N, blocks, kind.block * kind.bits // 8), dtype=np.uint8)
    scales = (rng.random(N * blocks) * 0.01).astype(np.float32)
    attributes = {"K": width, "N": N, "bits": kind.bits, "block_size": kind.block,
                  "accuracy_level": kind.accuracy}
    node = (length_field(NODE_INPUT, "rows") + length_field(NODE_INPUT, "weights")
            + length_field(NODE_INPUT, "scales") + length_field(NODE_OUTPUT, "product")
            + length_field(NODE_OP_TYPE, NBITS) + length_field(NODE_DOMAIN, MS_DOMAIN)
            + b"".join(length_field(NODE_ATTRIBUTE, _int_attribute(name, value))
                       for name, value in attributes.items()))
    graph = (length_field(GRAPH_NODE, node) + length_field(GRAPH_NAME, "rows_probe")
             + length_field(GRAPH_INITIALIZER, _tensor("weights", weights, DATA_TYPE_UINT8))
             + length_field(GRAPH_INITIALIZER, _tensor("scales", scales, DATA_TYPE_FLOAT))
             + length_field(GRAPH_INPUT, _float_rows("rows", width))
             + length_field(GRAPH_OUTPUT, _float_rows("product", N)))
    return (varint_field(MODEL_IR_VERSION, 8)
            + length_field(MODEL_OPSET_IMPORT, varint_field(OPSET_VERSION, 17))
            + length_field(MODEL_OPSET_IMPORT, length_field(OPSET_DOMAIN, MS_DOMAIN)
                           + varint_field(OPSET_VERSION, 1))
            + length_field(MODEL_GRAPH, graph))


def _width(kind: NBitsKind) -> int:
    return 2 * kind.block


def _int_attribute(name: str, value: int) -> bytes:
    return length_field(ATTR_NAME, name) + varint_field(ATTR_I, value) + varint_field(ATTR_TYPE, ATTR_TYPE_INT)


def _tensor(name: str, array: np.ndarray, data_type: int) -> bytes:
    return (b"".join(varint_field(TENSOR_DIMS, d) for d in array.shape)
            + varint_field(TENSOR_DATA_TYPE, data_type) + length_field(TENSOR_NAME, name)
            + length_field(TENSOR_RAW_DATA, array.tobytes()))


def _float_rows(name: str, width: int) -> bytes:
    """A ValueInfoProto: float32 [rows, width], rows named, not fixed."""
    shape = (length_field(SHAPE_DIM, length_field(DIM_PARAM, "rows"))
             + length_field(SHAPE_DIM, varint_field(DIM_VALUE, width)))
    tensor_type = varint_field(TENSOR_TYPE_ELEM, DATA_TYPE_FLOAT) + length_field(TENSOR_TYPE_SHAPE, shape)
    return length_field(VALUE_INFO_NAME, name) + length_field(VALUE_INFO_TYPE, length_field(TYPE_TENSOR, tensor_type))


def _options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    if SHARED_POOL.threads is not None:  # once the process-wide pool exists, all must use it
        options.use_per_session_threads = False
    else:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return options
