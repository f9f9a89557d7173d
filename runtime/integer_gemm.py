"""onnxruntime's integer GEMM (MatMulIntegerToFloat) in int8 packages' encoders, per CPU.

Those encoders quantize each activation row to uint8 (zero point 128) and multiply it by
int8 weights. On x86 CPUs with VNNI that is MLAS's fastest kernel. Without VNNI (AMD Zen
1-3; Intel laptops and desktops before Ice Lake, servers before Cascade Lake) MLAS sums
pairs of uint8 x int8 products into int16 (vpmaddubsw), which saturates: one 512x512
linear erred by 8.9% of its scale on an AMD EPYC, a t5-small-shaped encoder by 14% against
fp32 (docs/results.md, "int8 encoders on AVX2-only CPUs").

The same weights stored as uint8 with zero point 128 (the sign bit flipped: w + 128) are
the same integers, and MLAS multiplies uint8 x uint8 by widening to 16 bits first, which
never saturates. So on such CPUs the runtime rewrites the encoder graph in memory at load
(`unsigned_weight_graph`): each int8 weight is declared uint8 and handed to onnxruntime as
a buffer of its flipped bytes, each product gets the zero point, and every other tensor
is still read by onnxruntime from the package folder. The package on disk is unchanged."""
from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgeseq.errors import PackageError
from edgeseq.onnx_wire import (DATA_TYPE_INT8, DATA_TYPE_UINT8, GRAPH_INITIALIZER, GRAPH_NODE,
                               GRAPH_VALUE_INFO, LENGTH, NODE_INPUT, TENSOR_DATA_TYPE,
                               TENSOR_DIMS, TENSOR_NAME, TENSOR_RAW_DATA, VALUE_INFO_NAME,
                               Malformed, WireNode, WireTensor, fields_with_extent,
                               length_field, read_node, read_tensor, string, tensor_data, text,
                               varint_field)

from .rewritten_graph import RewrittenGraph, model_graph, with_graph

INTEGER_GEMM = "MatMulIntegerToFloat"
MS_DOMAIN = "com.microsoft"
B_ZERO_POINT = 5  # MatMulIntegerToFloat's inputs: A, B, a_scale, b_scale, a_zero_point, b_zero_point
ZERO_POINT_NAME = "edgeseq.unsigned_weight_zero_point"
SUBGRAPH_OPS = ("If", "Loop", "Scan")  # could read a weight from an inner graph


def uses_integer_gemm(encoder_graph: Path | bytes) -> bool:
    """Whether an encoder (its file, or its bytes) multiplies in onnxruntime's integer GEMM
    (MatMulIntegerToFloat: int8 packages' encoders, fastest on CPUs with VNNI)."""
    data = encoder_graph if isinstance(encoder_graph, bytes) else encoder_graph.read_bytes()
    return INTEGER_GEMM.encode() in data


def integer_gemm_saturates(cpu_flags: set[str] | None) -> bool:
    """Whether onnxruntime's uint8 x int8 GEMM saturates on this CPU (`cpu_flags`: its
    x86 flags, None where unknown or not x86): without VNNI it sums pairs of products into
    int16. ARM CPUs use other kernels (sdot/udot, or widening to 16 bits)."""
    return cpu_flags is not None and not cpu_flags & {"avx512_vnni", "avx_vnni"}


def x86_cpu_flags() -> set[str] | None:
    """The CPU's feature flags, named as Linux's /proc/cpuinfo names them, on x86; None
    elsewhere or where unknown. Linux lists them all; other systems (Windows, macOS) get
    the ones numpy's own CPU dispatch detected (numpy_cpu_flags)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "x86", "i686"):
        return None
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return numpy_cpu_flags()
    line = next((line for line in cpuinfo.splitlines() if line.startswith("flags")), None)
    return set(line.split(":", 1)[1].split()) if line else numpy_cpu_flags()


# numpy's names for the features integer_gemm_saturates asks about. numpy does not detect
# AVX-VNNI (the 256-bit form of Alder Lake and later without AVX-512): there such a CPU
# counts as saturating, and gets the exact uint8 x uint8 product at its cost in speed.
NUMPY_FLAGS = {"AVX2": "avx2", "AVX512F": "avx512f", "AVX512VNNI": "avx512_vnni"}


def numpy_cpu_flags(features: dict[str, bool] | None = None) -> set[str] | None:
    """/proc/cpuinfo-style flags from numpy's runtime CPU detection (`features`: its
    __cpu_features__), None if numpy does not say."""
    if features is None:
        try:
            from numpy._core._multiarray_umath import __cpu_features__ as features
        except ImportError:
            try:  # numpy 1.x
                from numpy.core._multiarray_umath import __cpu_features__ as features
            except ImportError:
                return None
    if not features.get("AVX2") and not features.get("SSE2"):
        return None  # not what numpy reports for any x86 CPU: unknown
    return {flag for name, flag in NUMPY_FLAGS.items() if features.get(name)}


def wants_unsigned_weights(choice: bool | None, integer_gemm: bool,
                           cpu_flags: set[str] | None) -> bool:
    """Whether to load an encoder with unsigned weights: `choice` (SessionConfig's
    unsigned_int8_weights) when set, else where its integer GEMM would saturate. The
    products then run on the CPU whatever the provider (cpu_kernels_on_gpu), so the
    host CPU decides."""
    if not integer_gemm:
        return False
    return integer_gemm_saturates(cpu_flags) if choice is None else choice


def cpu_kernels_on_gpu(device: str | None, integer_gemm: bool) -> str | None:
    """A warning when an integer-GEMM encoder (uses_integer_gemm) meets a session computing
    in GPU memory (`device`, see decoder.device_memory): onnxruntime's CUDA provider (1.31)
    has no kernel for it, so those products would run on the CPU with copies each way."""
    if device is None or not integer_gemm:
        return None
    return ("this int8 package's encoder multiplies in an integer GEMM that onnxruntime's "
            "CUDA provider lacks, so it runs on the CPU; for GPUs export with "
            "`edgeseq export ... --int8-encoder blocks` (or use an fp16/fp32 package)")


def unsigned_weight_graph(graph_file: Path, data: bytes | None = None) -> RewrittenGraph:
    """The graph at `graph_file` (`data`: its bytes, when the caller has read them) with
    every int8 weight of an integer GEMM stored as uint8 with zero point 128 (the same
    integers); the graph's other tensors in external files are read from beside it. The
    file was already checked (graph_check: locations inside the package and within their
    files)."""
    data = graph_file.read_bytes() if data is None else data
    try:
        return _rewrite(data, graph_file.parent.resolve())
    except (Malformed, ValueError, KeyError) as err:
        raise PackageError(f"{graph_file.name} could not be rewritten for this CPU's integer "
                           f"GEMM: {err}") from err


def unsigned_buffer_bytes(graph: bytes) -> int:
    """Bytes of the int8 weights unsigned_weight_graph would hand onnxruntime as buffers
    (what the memory model counts), for an encoder graph's bytes."""
    try:
        _, _, tensors, targets = _parts(graph)
    except (Malformed, ValueError) as err:
        raise PackageError(f"the encoder graph could not be read: {err}") from err
    return sum(int(np.prod(t.dims, dtype=np.int64)) for t in tensors.values()
               if t.name in targets and t.entries)


def _parts(data: bytes):
    """The graph's fields, its nodes and initializers (by span) and the weights to widen."""
    parts = list(fields_with_extent(data, *model_graph(data)))
    nodes = {extent: read_node(data, value) for n, wire, value, extent in parts
             if n == GRAPH_NODE and wire == LENGTH}
    tensors = {extent: read_tensor(data, value) for n, wire, value, extent in parts
               if n == GRAPH_INITIALIZER and wire == LENGTH}
    return parts, nodes, tensors, _widenable(nodes.values(), {t.name: t for t in tensors.values()})


def _rewrite(data: bytes, folder: Path) -> RewrittenGraph:
    parts, nodes, tensors, targets = _parts(data)
    out, external = [], {}
    for n, wire, value, extent in parts:
        piece = data[extent[0]:extent[1]]
        if extent in nodes and _reads_widened(nodes[extent], targets):
            piece = _with_zero_point(data, value)
        elif extent in tensors:
            tensor = tensors[extent]
            if tensor.name in targets and tensor.entries:  # given to onnxruntime as a buffer
                piece = _retyped(data, value)
                external[tensor.name] = ort.OrtValue.ortvalue_from_numpy(
                    _flipped(tensor, data, folder))
            elif tensor.name in targets:
                piece = _uint8_twin(tensor, _flipped(tensor, data, folder))
        elif n == GRAPH_VALUE_INFO and wire == LENGTH and \
                string(data, value, VALUE_INFO_NAME) in targets:
            piece = b""  # its declared type is int8
        out.append(piece)
    if targets:
        out.append(length_field(GRAPH_INITIALIZER, length_field(TENSOR_NAME, ZERO_POINT_NAME)
                                + varint_field(TENSOR_DATA_TYPE, DATA_TYPE_UINT8)
                                + length_field(TENSOR_RAW_DATA, bytes([128]))))
    return RewrittenGraph(with_graph(data, b"".join(out)), folder, external, tuple(sorted(targets)))


def _reads_widened(node: WireNode, targets: set[str]) -> bool:
    return node.op_type == INTEGER_GEMM and len(node.inputs) > 1 and node.inputs[1] in targets


def _widenable(nodes, tensors: dict[str, WireTensor]) -> set[str]:
    """Names of int8 weights that only integer GEMMs without a weight zero point read,
    as their B input; none when an inner graph could read one unseen."""
    nodes = list(nodes)
    if any(node.op_type in SUBGRAPH_OPS for node in nodes):
        return set()
    readers: dict[str, list[bool]] = {}
    for node in nodes:
        plain_gemm = node.op_type == INTEGER_GEMM and node.domain == MS_DOMAIN and \
            (len(node.inputs) <= B_ZERO_POINT or not node.inputs[B_ZERO_POINT])
        for i, name in enumerate(node.inputs):
            readers.setdefault(name, []).append(plain_gemm and i == 1)
    return {name for name, ok in readers.items()
            if all(ok) and name in tensors and tensors[name].data_type == DATA_TYPE_INT8
            and (tensors[name].entries or tensors[name].raw is not None)}


def _with_zero_point(buf: bytes, span: tuple[int, int]) -> bytes:
    """The node with its inputs padded to b_zero_point, which is set to 128."""
    kept, inputs = [], []
    for n, wire, value, extent in fields_with_extent(buf, *span):
        if n == NODE_INPUT and wire == LENGTH:
            inputs.append(text(buf, value))
        else:
            kept.append(buf[extent[0]:extent[1]])
    inputs = inputs + [""] * (B_ZERO_POINT - len(inputs)) + [ZERO_POINT_NAME]
    return length_field(GRAPH_NODE, b"".join(length_field(NODE_INPUT, name) for name in inputs)
                        + b"".join(kept))


def _retyped(buf: bytes, span: tuple[int, int]) -> bytes:
    """An external int8 initializer declared uint8 (its data comes as a buffer)."""
    kept = b"".join(buf[e[0]:e[1]] for n, _, _, e in fields_with_extent(buf, *span)
                    if n != TENSOR_DATA_TYPE)
    return length_field(GRAPH_INITIALIZER, kept + varint_field(TENSOR_DATA_TYPE, DATA_TYPE_UINT8))


def _uint8_twin(tensor: WireTensor, flipped: np.ndarray) -> bytes:
    """An initializer inside the graph holding `flipped`, its uint8 values."""
    body = b"".join(varint_field(TENSOR_DIMS, d) for d in tensor.dims)
    body += varint_field(TENSOR_DATA_TYPE, DATA_TYPE_UINT8) + length_field(TENSOR_NAME, tensor.name)
    return length_field(GRAPH_INITIALIZER, body + length_field(TENSOR_RAW_DATA, flipped.tobytes()))


def _flipped(tensor: WireTensor, data: bytes, folder: Path) -> np.ndarray:
    """An int8 tensor's values + 128 as uint8 [dims] (the sign bit flipped), read from
    its external file in `folder` or from its raw_data in `data`."""
    count = int(np.prod(tensor.dims, dtype=np.int64))
    return (tensor_data(tensor, data, folder, count) ^ 0x80).reshape(tensor.dims)
