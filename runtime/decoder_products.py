"""fp32 products over an int8 decoder's weights, on x86 CPUs without VNNI and on CPUs
whose int8 products compute a lone row differently.

An int8 package's decoder multiplies in onnxruntime's 8-bit MatMulNBits, which quantizes
each activation row to int8 and multiplies int8 x int8. Without VNNI (AMD Zen 1-3, Intel
before Ice Lake / Cascade Lake) that kernel's cost grows with the rows of a pass faster
than fp32 GEMM's does: a verify pass of 17 tokens costs ~3x a one-token pass. Speculation
verifies many rows per pass, so there the same weights, dequantized at load and multiplied
by MLAS's fp32 GEMM, decode faster: on the default model (JFLEG dev, AMD EPYC, 2 threads)
input drafting took 0.80-0.88x the time in three runs, plain greedy 0.90-1.09x
(bench/decoder_compute.py).
For small decoders only: random-weight T5 decoders with 22, 71 and 147 MB of dequantized
weights (d_model 256, 384, 512) decoded 1.6-1.7x slower that way, their one-token passes
reading 4x the bytes of int8 weights. And for speculation: even the default model's
one-token passes are ~15% slower in fp32 (passes of 5 tokens and more faster). So by
default the rewrite applies to decoders within AUTO_LIMIT of packages that recommend a
drafter (the default model's: input drafting).

And where this CPU's 8-bit products with int8 compute round a row alone differently from
the same row among others (runtime/nbits_rows.py: AMD Zen 4 with AVX-512 VNNI), for the
same small drafting decoders: there int8 products would break greedy speculation's
bitwise exactness (a one-token pass and a verify pass's rows differ), and fp32 products
were as fast or faster (default model, first 300 JFLEG dev sentences, 3 rounds: plain
greedy 0.976x the int8 time, input drafting 0.929x). Larger decoders stay int8 there:
their speculation returns plain greedy's tokens except at near-ties.

The rewrite happens in memory at load (`fp32_product_graph`): each 8-bit MatMulNBits
without zero points, If branches included, becomes a MatMul whose weight [K, N] is handed
to onnxruntime as a buffer ((stored - 128) x its block's scale, what MatMulNBits
multiplies by); int8 weights nothing else reads are dropped. The package on disk is
unchanged. Rows stay independent (fp32 MatMul over prepacked weights has no one-row
kernel, export/row_invariant.py), so greedy speculation still returns plain greedy's
tokens bitwise; the tokens themselves can differ from the int8 products' at near-ties
(activations no longer rounded to int8: closer to the fp32 model)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgeseq.errors import PackageError
from edgeseq.manifest import Manifest
from edgeseq.onnx_wire import (ATTR_G, ATTR_GRAPHS, DATA_TYPE_FLOAT,
                               DATA_TYPE_UINT8, ENTRY_KEY, ENTRY_VALUE, GRAPH_INITIALIZER,
                               GRAPH_INPUT, GRAPH_NODE, GRAPH_OUTPUT, LENGTH, NODE_ATTRIBUTE,
                               NODE_INPUT, NODE_NAME, NODE_OUTPUT, NODE_OP_TYPE,
                               TENSOR_DATA_LOCATION, TENSOR_DATA_TYPE, TENSOR_DIMS,
                               TENSOR_EXTERNAL_DATA, TENSOR_LOCATION_EXTERNAL, TENSOR_NAME,
                               VALUE_INFO_NAME, Malformed, WireTensor,
                               fields_with_extent, length_field, node_attributes, read_node, read_tensor,
                               string, tensor_data, text, varint_field)

from .integer_gemm import integer_gemm_saturates
from .nbits_rows import DecoderRows
from .providers import SessionConfig
from .rewritten_graph import RewrittenGraph, model_graph, with_graph

MB = 1 << 20
# The default rewrites decoders with at most this many bytes of dequantized weights:
# measured faster at 6.5 MB (the default model), 1.6-1.7x slower at 22, 71 and 147 MB
# (bench/decoder_compute.py, AMD EPYC Zen 3).
AUTO_LIMIT = 8 * MB
NBITS = "MatMulNBits"
MS_DOMAIN = "com.microsoft"
SUFFIX = ".fp32"  # the dequantized weight's name: the stored one's plus this
# Where the graph says the dequantized weights live: nowhere on disk, onnxruntime takes
# them as buffers (add_external_initializers) before it would read a file.
IN_MEMORY = "edgeseq.in-memory"


@dataclass(frozen=True)
class Product:
    """One 8-bit MatMulNBits the rewrite replaces: its stored weight [N, blocks, block]
    (uint8, zero point 128) and per-block scales, multiplying [.., K] into [.., N]."""
    weight: str
    scales: str
    k: int
    n: int
    block_size: int

    @property
    def fp32_bytes(self) -> int:
        return 4 * self.k * self.n


@dataclass
class ProductScan:
    """What the rewrite needs to know of a decoder graph, read once (deciding whether to
    rewrite and rewriting share it)."""
    tensors: dict[str, WireTensor] = field(default_factory=dict)  # the main graph's initializers
    readers: dict[str, int] = field(default_factory=dict)   # value name -> nodes reading it
    products: dict[tuple[int, int], Product] = field(default_factory=dict)  # node span -> product
    holders: set[tuple[int, int]] = field(default_factory=set)  # spans of nodes holding graphs
    boundary: set[str] = field(default_factory=set)  # the main graph's inputs and outputs

    @property
    def fp32_bytes(self) -> int:
        """Bytes the dequantized weights would take: 0 without 8-bit MatMulNBits to rewrite."""
        return sum(p.fp32_bytes for p in _weights(self).values())


def scan_products(data: bytes) -> ProductScan:
    """The rewritable products of a decoder graph (its serialized bytes)."""
    try:
        return _scan(data)
    except (Malformed, ValueError) as err:
        raise PackageError(f"the decoder graph could not be read: {err}") from err


def fp32_product_bytes(data: bytes) -> int:
    """Bytes the dequantized weights of a decoder graph (its serialized bytes) would take:
    0 when it has no 8-bit MatMulNBits to rewrite."""
    return scan_products(data).fp32_bytes


def wants_fp32_products(choice: bool | None, provider: str, cpu_flags: set[str] | None,
                        fp32_bytes: int, drafts: bool, int8_rows_exact: Callable[[], bool]) -> bool:
    """Whether to load an int8 decoder with fp32 products: `choice` (SessionConfig's
    fp32_decoder_products) when set, else on the CPU provider for decoders whose
    dequantized weights (`fp32_bytes`) stay within AUTO_LIMIT, of packages that recommend a
    drafter (`drafts`), where the CPU is x86 without VNNI (integer_gemm_saturates tells
    those apart: one-token passes are ~15% slower in fp32, passes of 5 tokens and more
    faster, so the gain is speculation's) or where its int8 products do not compute a row
    alone as among others (`int8_rows_exact`, asked last since it runs onnxruntime:
    runtime/nbits_rows.py; there fp32 products keep greedy speculation exact)."""
    if not fp32_bytes:
        return False
    if choice is not None:
        return choice
    return (drafts and provider == "cpu" and fp32_bytes <= AUTO_LIMIT
            and (integer_gemm_saturates(cpu_flags) or not int8_rows_exact()))


def wanted_products(decoder_graph: bytes, manifest: Manifest, config: SessionConfig,
                    cpu_flags: set[str] | None, rows: DecoderRows | None = None
                    ) -> ProductScan | None:
    """The products a package's decoder (its graph's bytes) is loaded multiplying in fp32
    under `config` on a CPU with `cpu_flags` (`rows`: how this CPU computes the graph's
    rows, when the caller reads it too); None where it multiplies as stored. Only int8
    packages: an int4 package's few 8-bit products stay (its time goes to the 4-bit ones;
    unmeasured)."""
    if manifest.quant != "int8":
        return None
    scan = scan_products(decoder_graph)
    drafts = recommends_drafter(manifest)
    if not wants_fp32_products(config.fp32_decoder_products, config.provider, cpu_flags,
                               scan.fp32_bytes, drafts,
                               lambda: (rows or DecoderRows(decoder_graph)).alone):
        return None
    return scan


def recommends_drafter(manifest: Manifest) -> bool:
    """Whether a package's decoding defaults name a drafter (it is meant to speculate)."""
    return manifest.generation.get("draft") not in (None, "none")


def fp32_product_graph(graph_file: Path, data: bytes | None = None,
                       scan: ProductScan | None = None) -> RewrittenGraph:
    """The decoder graph at `graph_file` (`data`: its bytes; `scan`: scan_products' of
    them, when the caller has it) with every 8-bit MatMulNBits without zero points a MatMul
    over its dequantized fp32 weights [K, N], handed over as buffers; the graph's other
    external tensors are read from beside it (already checked by graph_check)."""
    data = graph_file.read_bytes() if data is None else data
    try:
        return _rewrite(data, graph_file.parent.resolve(), scan if scan is not None else _scan(data))
    except (Malformed, ValueError, KeyError, OSError) as err:
        raise PackageError(f"{graph_file.name} could not be rewritten with fp32 products: "
                           f"{err}") from err


def _rewrite(data: bytes, folder: Path, scan: ProductScan) -> RewrittenGraph:
    weights = _weights(scan)
    taken = set(scan.tensors) | scan.boundary
    clash = sorted(w + SUFFIX for w in weights if w + SUFFIX in taken)
    if clash:
        raise ValueError(f"the graph already names {clash[0]!r}")
    # Stored weights and scales that only rewritten products read go: nothing else needs them.
    reads = {}
    for product in scan.products.values():
        for name in (product.weight, product.scales):
            reads[name] = reads.get(name, 0) + 1
    dropped = {name for name, count in reads.items()
               if count == scan.readers.get(name, 0) and name not in scan.boundary}
    external = {w + SUFFIX: ort.OrtValue.ortvalue_from_numpy(_dequantized(p, scan, data, folder))
                for w, p in weights.items()}
    declared = b"".join(_declaration(w + SUFFIX, p) for w, p in weights.items())
    graph = _graph_bytes(data, model_graph(data), scan, dropped) + declared
    return RewrittenGraph(with_graph(data, graph), folder, external, tuple(sorted(weights)))


def _scan(data: bytes) -> ProductScan:
    scan = ProductScan()
    main = model_graph(data)
    for n, wire, value, _ in fields_with_extent(data, *main):
        if n == GRAPH_INITIALIZER and wire == LENGTH:
            tensor = read_tensor(data, value)
            scan.tensors[tensor.name] = tensor
        elif n in (GRAPH_INPUT, GRAPH_OUTPUT) and wire == LENGTH:
            scan.boundary.add(string(data, value, VALUE_INFO_NAME))
    _scan_nodes(data, main, scan)
    return scan


def _scan_nodes(data: bytes, graph: tuple[int, int], scan: ProductScan) -> None:
    for n, wire, value, _ in fields_with_extent(data, *graph):
        if n != GRAPH_NODE or wire != LENGTH:
            continue
        node = read_node(data, value)
        for name in node.inputs:
            scan.readers[name] = scan.readers.get(name, 0) + 1
        ints, inner = node_attributes(data, value)
        if inner:
            scan.holders.add(value)
        for sub in inner:
            _scan_nodes(data, sub, scan)
        product = _product(node.op_type, node.domain, node.inputs, ints, scan.tensors)
        if product is not None:
            scan.products[value] = product


def _product(op_type: str, domain: str, inputs: tuple[str, ...], ints: dict[str, int],
             tensors: dict[str, WireTensor]) -> Product | None:
    """The product a node computes, when it is one the rewrite takes: an 8-bit MatMulNBits
    without zero points, group indices or bias, over the main graph's initializers."""
    if op_type != NBITS or domain != MS_DOMAIN or ints.get("bits") != 8 or len(inputs) < 3:
        return None
    if any(inputs[3:]):
        return None
    k, n, block = ints.get("K", 0), ints.get("N", 0), ints.get("block_size", 0)
    weight, scales = tensors.get(inputs[1]), tensors.get(inputs[2])
    if weight is None or scales is None or min(k, n, block) <= 0:
        return None
    blocks = -(-k // block)
    if weight.dims != (n, blocks, block) or weight.data_type != DATA_TYPE_UINT8 \
            or scales.data_type != DATA_TYPE_FLOAT or int(np.prod(scales.dims)) != n * blocks:
        return None
    return Product(weight.name, scales.name, k, n, block)


def _weights(scan: ProductScan) -> dict[str, Product]:
    """One product per stored weight (a weight read by several products is dequantized once)."""
    return {p.weight: p for p in scan.products.values()}


def _dequantized(p: Product, scan: ProductScan, data: bytes, folder: Path) -> np.ndarray:
    """[K, N] float32: what MatMulNBits multiplies by, (stored - 128) x its block's scale."""
    blocks = -(-p.k // p.block_size)
    stored = tensor_data(scan.tensors[p.weight], data, folder, p.n * blocks * p.block_size)
    scale_bytes = tensor_data(scan.tensors[p.scales], data, folder, 4 * p.n * blocks)
    scales = np.frombuffer(scale_bytes.tobytes(), "<f4").reshape(p.n, blocks, 1)
    dense = (stored.reshape(p.n, blocks, p.block_size).astype(np.float32) - 128.0) * scales
    return np.ascontiguousarray(dense.reshape(p.n, -1)[:, :p.k].T)


def _declaration(name: str, p: Product) -> bytes:
    """An initializer [K, N] float32 whose data onnxruntime is handed as a buffer."""
    body = varint_field(TENSOR_DIMS, p.k) + varint_field(TENSOR_DIMS, p.n)
    body += varint_field(TENSOR_DATA_TYPE, DATA_TYPE_FLOAT) + length_field(TENSOR_NAME, name)
    body += length_field(TENSOR_EXTERNAL_DATA, length_field(ENTRY_KEY, "location")
                         + length_field(ENTRY_VALUE, IN_MEMORY))
    body += varint_field(TENSOR_DATA_LOCATION, TENSOR_LOCATION_EXTERNAL)
    return length_field(GRAPH_INITIALIZER, body)


def _graph_bytes(data: bytes, graph: tuple[int, int], scan: ProductScan, dropped: set[str]) -> bytes:
    """A GraphProto's fields with its products rewritten, its inner graphs' too, and the
    `dropped` initializers left out."""
    out = []
    for n, wire, value, extent in fields_with_extent(data, *graph):
        piece = data[extent[0]:extent[1]]
        if n == GRAPH_NODE and wire == LENGTH:
            product = scan.products.get(value)
            if product is not None:
                piece = _matmul(data, value, product)
            elif value in scan.holders:
                piece = _with_inner_graphs(data, value, scan, dropped)
        elif n == GRAPH_INITIALIZER and wire == LENGTH and \
                string(data, value, TENSOR_NAME) in dropped:
            piece = b""
        out.append(piece)
    return b"".join(out)


def _matmul(data: bytes, node: tuple[int, int], p: Product) -> bytes:
    """The MatMulNBits node at `node` as MatMul(A, dequantized weight), same outputs and name."""
    inputs, kept = [], []
    for n, wire, value, extent in fields_with_extent(data, *node):
        if n == NODE_INPUT and wire == LENGTH:
            inputs.append(text(data, value))
        elif n in (NODE_OUTPUT, NODE_NAME):
            kept.append(data[extent[0]:extent[1]])
    body = length_field(NODE_INPUT, inputs[0]) + length_field(NODE_INPUT, p.weight + SUFFIX)
    return length_field(GRAPH_NODE, body + b"".join(kept) + length_field(NODE_OP_TYPE, "MatMul"))


def _with_inner_graphs(data: bytes, node: tuple[int, int], scan: ProductScan, dropped: set[str]) -> bytes:
    """A node that holds graphs (an If's branches) with those graphs rewritten."""
    out = []
    for n, wire, value, extent in fields_with_extent(data, *node):
        piece = data[extent[0]:extent[1]]
        if n == NODE_ATTRIBUTE and wire == LENGTH:
            attribute = b""
            for an, aw, av, ae in fields_with_extent(data, *value):
                if an in (ATTR_G, ATTR_GRAPHS) and aw == LENGTH:
                    attribute += length_field(an, _graph_bytes(data, av, scan, dropped))
                else:
                    attribute += data[ae[0]:ae[1]]
            piece = length_field(NODE_ATTRIBUTE, attribute)
        out.append(piece)
    return length_field(GRAPH_NODE, b"".join(out))
