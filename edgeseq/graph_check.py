"""Check a package's ONNX graphs before onnxruntime sees them, without the `onnx`
package (the runtime depends only on onnxruntime, numpy and tokenizers).

A minimal protobuf wire-format reader walks ModelProto -> GraphProto -> NodeProto, the
subgraphs held by node attributes (If branches), every TensorProto's external-data
entries and the model's opset imports. A graph is refused when it

- uses an operator domain other than the default ONNX domain and com.microsoft, or an
  operator edgeseq's exporter never emits (ALLOWED_OPS), or defines model-local functions;
- points a tensor's external data at an absolute path, a path with "..", or a file the
  manifest does not list, or past the end of that file;
- has inputs or outputs other than those the manifest declares, or whose element type or
  static sizes differ from what the runtime feeds and reads for the manifest's arch
  (graph_signatures)."""
from __future__ import annotations

import ntpath
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseq import names
from edgeseq.arch import ArchSpec, Family
from edgeseq.errors import PackageError
from edgeseq.onnx_wire import (ATTR_G, ATTR_GRAPHS, ATTR_NAME, ATTR_SPARSE_TENSOR,
                               ATTR_SPARSE_TENSORS, ATTR_T, ATTR_TENSORS, DATA_TYPE_BOOL,
                               DATA_TYPE_FLOAT, DATA_TYPE_FLOAT16, DATA_TYPE_INT32,
                               DATA_TYPE_INT64, DIM_PARAM, DIM_VALUE, ENTRY_KEY, ENTRY_VALUE,
                               GRAPH_INITIALIZER, GRAPH_INPUT, GRAPH_NODE, GRAPH_OUTPUT,
                               GRAPH_SPARSE_INITIALIZER, LENGTH, MODEL_FUNCTIONS, MODEL_GRAPH,
                               MODEL_OPSET_IMPORT, NODE_ATTRIBUTE, NODE_DOMAIN, NODE_NAME,
                               NODE_OP_TYPE, OPSET_DOMAIN, SHAPE_DIM, SPARSE_INDICES,
                               SPARSE_VALUES, TENSOR_DATA_LOCATION, TENSOR_EXTERNAL_DATA,
                               TENSOR_LOCATION_EXTERNAL, TENSOR_NAME, TENSOR_TYPE_ELEM,
                               TENSOR_TYPE_SHAPE, TYPE_TENSOR, VALUE_INFO_NAME, VALUE_INFO_TYPE,
                               VARINT, Malformed, fields, spans, string, text)

# Every operator edgeseq's exporter emits, collected from the graphs it writes for each
# family (T5 v1.0 / v1.1, BART, mBART, Marian, Whisper) in fp32, fp16, int8 and int4,
# with and without exit heads (ScatterElements: a draft head over part of the vocabulary).
# An exporter that starts emitting a new operator must add it here.
DEFAULT_DOMAIN = ""
MS_DOMAIN = "com.microsoft"
DOMAIN_ALIASES = {"ai.onnx": DEFAULT_DOMAIN}
ALLOWED_OPS: dict[str, frozenset[str]] = {
    DEFAULT_DOMAIN: frozenset({
        "Abs", "Add", "Cast", "Concat", "Constant", "ConstantOfShape", "Conv", "Expand", "Gather",
        "Gelu", "Greater", "Identity", "If", "LayerNormalization", "MatMul", "Max", "Min",
        "Mul", "QuantizeLinear", "Range", "ReduceMax", "Relu", "Reshape", "ScatterElements",
        "Shape", "Sigmoid",
        "SimplifiedLayerNormalization", "Pad", "Slice", "Split", "Squeeze", "Sub", "Transpose",
        "Unsqueeze", "Where"}),
    MS_DOMAIN: frozenset({"MatMulNBits", "MatMulIntegerToFloat", "MultiHeadAttention"}),
}
MAX_GRAPH_DEPTH = 16  # If branches nest; a deeper graph is refused, not recursed into


@dataclass(frozen=True)
class Node:
    name: str
    op_type: str
    domain: str    # as written; "ai.onnx" and "" are the same domain
    graph: str     # where it sits: "main", or "main/<node>.then_branch" for If branches


@dataclass(frozen=True)
class ExternalTensor:
    name: str
    entries: dict[str, str]  # location, offset, length, checksum
    graph: str


@dataclass(frozen=True)
class TensorType:
    """A graph input's or output's declared type. dims: None when no shape is declared;
    an int per static axis, a str (or None) per named or unknown one."""
    elem_type: int  # 0 when the value is not a tensor
    dims: tuple[int | str | None, ...] | None


@dataclass
class ModelSummary:
    """What the checks need from a ModelProto."""
    inputs: list[str] = field(default_factory=list)    # the main graph's
    outputs: list[str] = field(default_factory=list)
    types: dict[str, TensorType] = field(default_factory=dict)  # of those inputs and outputs
    nodes: list[Node] = field(default_factory=list)    # every graph's, subgraphs included
    external: list[ExternalTensor] = field(default_factory=list)
    opset_domains: list[str] = field(default_factory=list)
    functions: int = 0


# -- ONNX messages -----------------------------------------------------------------------
def _tensor(buf: bytes, span: tuple[int, int], where: str, out: ModelSummary) -> None:
    name, entries, external = "", {}, False
    for n, wire, value in fields(buf, *span):
        if n == TENSOR_NAME and wire == LENGTH:
            name = text(buf, value)
        elif n == TENSOR_EXTERNAL_DATA and wire == LENGTH:
            entries[string(buf, value, ENTRY_KEY)] = string(buf, value, ENTRY_VALUE)
        elif n == TENSOR_DATA_LOCATION and wire == VARINT:
            external = value == TENSOR_LOCATION_EXTERNAL
    if external or entries:
        out.external.append(ExternalTensor(name, entries, where))


def _dim(buf: bytes, span: tuple[int, int]) -> int | str | None:
    size: int | str | None = None
    for n, wire, value in fields(buf, *span):
        if n == DIM_VALUE and wire == VARINT:
            size = value - (1 << 64) if value >= 1 << 63 else value  # int64
        elif n == DIM_PARAM and wire == LENGTH:
            size = text(buf, value)
    return size


def _value_type(buf: bytes, span: tuple[int, int]) -> TensorType:
    """The TensorType of a ValueInfoProto (protobuf: the last occurrence of a field wins)."""
    elem, dims = 0, None
    for type_span in spans(buf, span, VALUE_INFO_TYPE):
        for tensor in spans(buf, type_span, TYPE_TENSOR):
            for n, wire, value in fields(buf, *tensor):
                if n == TENSOR_TYPE_ELEM and wire == VARINT:
                    elem = value
                elif n == TENSOR_TYPE_SHAPE and wire == LENGTH:
                    dims = tuple(_dim(buf, d) for d in spans(buf, value, SHAPE_DIM))
    return TensorType(elem, dims)


def _sparse(buf: bytes, span: tuple[int, int], where: str, out: ModelSummary) -> None:
    for part in (SPARSE_VALUES, SPARSE_INDICES):
        for s in spans(buf, span, part):
            _tensor(buf, s, where, out)


def _node(buf: bytes, span: tuple[int, int], where: str, depth: int, out: ModelSummary) -> None:
    name, op_type, domain, attributes = "", "", "", []
    for n, wire, value in fields(buf, *span):
        if wire != LENGTH:
            continue
        if n == NODE_NAME:
            name = text(buf, value)
        elif n == NODE_OP_TYPE:
            op_type = text(buf, value)
        elif n == NODE_DOMAIN:
            domain = text(buf, value)
        elif n == NODE_ATTRIBUTE:
            attributes.append(value)
    out.nodes.append(Node(name, op_type, domain, where))
    for attr in attributes:
        attr_name = string(buf, attr, ATTR_NAME)
        for n, wire, value in fields(buf, *attr):
            if wire != LENGTH:
                continue
            if n in (ATTR_G, ATTR_GRAPHS):
                _graph(buf, value, f"{where}/{name or op_type}.{attr_name}", depth + 1, out)
            elif n in (ATTR_T, ATTR_TENSORS):
                _tensor(buf, value, where, out)
            elif n in (ATTR_SPARSE_TENSOR, ATTR_SPARSE_TENSORS):
                _sparse(buf, value, where, out)


def _graph(buf: bytes, span: tuple[int, int], where: str, depth: int,
           out: ModelSummary) -> None:
    if depth > MAX_GRAPH_DEPTH:
        raise Malformed(f"subgraphs nest deeper than {MAX_GRAPH_DEPTH} levels at {where}")
    main = depth == 0
    for n, wire, value in fields(buf, *span):
        if wire != LENGTH:
            continue
        if n == GRAPH_NODE:
            _node(buf, value, where, depth, out)
        elif n == GRAPH_INITIALIZER:
            _tensor(buf, value, where, out)
        elif n == GRAPH_SPARSE_INITIALIZER:
            _sparse(buf, value, where, out)
        elif main and n in (GRAPH_INPUT, GRAPH_OUTPUT):
            name = string(buf, value, VALUE_INFO_NAME)
            (out.inputs if n == GRAPH_INPUT else out.outputs).append(name)
            out.types[name] = _value_type(buf, value)


def read_model(data: bytes, file: str = "the model") -> ModelSummary:
    """Summarise a serialized ModelProto; PackageError if it is not well-formed."""
    out = ModelSummary()
    graphs = 0
    try:
        for n, wire, value in fields(data, 0, len(data)):
            if wire != LENGTH:
                continue
            if n == MODEL_GRAPH:
                graphs += 1
                _graph(data, value, "main", 0, out)
            elif n == MODEL_OPSET_IMPORT:
                out.opset_domains.append(string(data, value, OPSET_DOMAIN))
            elif n == MODEL_FUNCTIONS:
                out.functions += 1
    except Malformed as err:
        raise PackageError(f"{file} is not a well-formed ONNX model: {err}") from err
    if graphs != 1:
        raise PackageError(f"{file} is not a well-formed ONNX model: it holds {graphs} main "
                           "graphs, not 1")
    return out


# -- checks ------------------------------------------------------------------------------
def _check_operators(file: str, model: ModelSummary) -> None:
    if model.functions:
        raise PackageError(f"{file} defines {model.functions} model-local function(s); edgeseq "
                           "graphs use only built-in operators. Re-export the package.")
    for domain in model.opset_domains:
        if DOMAIN_ALIASES.get(domain, domain) not in ALLOWED_OPS:
            raise PackageError(f"{file} imports operator domain {domain!r}; edgeseq graphs use "
                               f"only the default ONNX domain and {MS_DOMAIN!r}")
    for node in model.nodes:
        domain = DOMAIN_ALIASES.get(node.domain, node.domain)
        where = f"node {node.name!r} ({node.op_type}) in {file} [{node.graph}]"
        if domain not in ALLOWED_OPS:
            raise PackageError(f"{where} uses operator domain {node.domain!r}; edgeseq graphs "
                               f"use only the default ONNX domain and {MS_DOMAIN!r}")
        if node.op_type not in ALLOWED_OPS[domain]:
            raise PackageError(f"{where} uses operator {domain or 'ai.onnx'}::{node.op_type}, "
                               "which edgeseq's exporter never emits; the package is refused")


def _bad_location(location: str) -> str | None:
    """Why an external-data location is not a plain package file name, or None."""
    if not location:
        return "has no location"
    if posixpath.isabs(location) or ntpath.isabs(location) or ntpath.splitdrive(location)[0]:
        return "is an absolute path"
    parts = location.replace("\\", "/").split("/")
    if ".." in parts:
        return "leaves the package (..)"
    if len(parts) > 1 or "\0" in location:
        return "is not a plain file name inside the package"
    return None


def _check_external(file: str, model: ModelSummary, files: dict[str, dict[str, Any]]) -> None:
    for tensor in model.external:
        location = tensor.entries.get("location", "")
        where = f"tensor {tensor.name!r} in {file} stores its data at {location!r}, which"
        why = _bad_location(location)
        if why is None and location not in files:
            why = "is not a file listed in the manifest"
        if why is None and location.endswith(".onnx"):
            why = "is a graph, not a weights file"
        if why:
            raise PackageError(f"{where} {why}; the package is refused")
        try:
            offset = int(tensor.entries.get("offset", 0))
            length = int(tensor.entries["length"]) if "length" in tensor.entries else None
        except ValueError:
            raise PackageError(f"{where} has a non-numeric offset or length") from None
        size = files[location].get("bytes")
        end = offset + (length or 0)
        if offset < 0 or (length is not None and length < 0) or \
                (isinstance(size, int) and end > size):
            raise PackageError(f"{where} reaches bytes {offset}..{end}, outside the file's "
                               f"{size} bytes; the package is refused")


def check_io(graph: str, got: dict[str, list[str]], expected: dict[str, list[str]]) -> None:
    """The graph's inputs and outputs must be exactly those the manifest declares."""
    for kind in ("inputs", "outputs"):
        if sorted(got[kind]) != sorted(expected[kind]):
            missing = sorted(set(expected[kind]) - set(got[kind]))
            extra = sorted(set(got[kind]) - set(expected[kind]))
            repeated = sorted({n for n in got[kind] if got[kind].count(n) > 1})
            raise PackageError(f"{graph} graph {kind} do not match the manifest "
                               f"(missing {missing}, unexpected {extra}"
                               + (f", repeated {repeated})" if repeated else ")"))


# -- types and sizes ---------------------------------------------------------------------
# One expected axis: (the manifest field that fixes its size, that size), or None where
# any size goes (batch, source, new and past tokens: named axes in the exporter's graphs).
Axis = tuple[str, int] | None
Signature = dict[str, tuple[int, tuple[Axis, ...]]]  # tensor -> (element type, axes)
TYPE_NAMES = {DATA_TYPE_FLOAT: "float32", DATA_TYPE_FLOAT16: "float16",
              DATA_TYPE_INT32: "int32", DATA_TYPE_INT64: "int64", DATA_TYPE_BOOL: "bool"}


def graph_signatures(arch: ArchSpec) -> dict[str, Signature]:
    """Per graph role, the type and sizes of each input and output as the runtime feeds
    and reads them (runtime/decoder.py, kv_cache.py; shapes documented in names.py)."""
    F, I64, B = DATA_TYPE_FLOAT, DATA_TYPE_INT64, DATA_TYPE_BOOL
    heads, head_dim = ("arch.num_heads", arch.num_heads), ("arch.head_dim", arch.head_dim)
    d_model, layers = ("arch.d_model", arch.d_model), ("arch.decoder_layers", arch.decoder_layers)
    whisper = arch.family == Family.WHISPER
    # Whisper's encoder always sees 30 s: its source length is fixed by the graph
    source = ("arch.max_source_positions", arch.max_source_positions) if whisper else None
    cross = (F, (None, heads, source, head_dim))
    kv = (F, (None, heads, None, head_dim))
    if whisper:
        encoder: Signature = {names.ENC_INPUT_FEATURES: (F, (
            None, ("arch.num_mel_bins", arch.num_mel_bins),
            ("2 x arch.max_source_positions", 2 * arch.max_source_positions)))}
    else:
        encoder = {names.ENC_INPUT_IDS: (I64, (None, None)),
                   names.ENC_ATTENTION_MASK: (I64, (None, None))}
    decoder: Signature = {
        names.DEC_INPUT_IDS: (I64, (None, None)), names.DEC_PAST_LENGTH: (I64, ()),
        names.DEC_ENCODER_BIAS: (F, (None, None, None, source)),
        names.DEC_LAYER_RUN: (B, (layers,)), names.DEC_LAYER_FILL: (B, (layers,)),
        names.DEC_HIDDEN_IN: (F, (None, None, d_model)), names.DEC_USE_HIDDEN: (B, ()),
        names.DEC_LOGITS: (F, (None, None, ("arch.vocab_size", arch.vocab_size))),
        names.DEC_HIDDEN_OUT: (F, (None, None, d_model))}
    for i in range(arch.decoder_layers):
        for name in (names.cross_key(i), names.cross_value(i)):
            encoder[name] = decoder[name] = cross
        for name in (names.past_key(i), names.past_value(i), names.new_key(i), names.new_value(i)):
            decoder[name] = kv
    return {"encoder": encoder, "decoder": decoder}


def _type_name(elem_type: int) -> str:
    if elem_type == 0:
        return "not a tensor"
    return TYPE_NAMES.get(elem_type, f"ONNX type {elem_type}")


def check_types(where: str, model: ModelSummary, expected: Signature) -> None:
    """Each input's and output's element type, rank and static sizes must be those of
    `expected` (a static size where a named axis is expected is left to onnxruntime)."""
    for name, (elem_type, axes) in expected.items():
        got = model.types.get(name)
        if got is None:  # check_io has already named what is missing
            continue
        tensor = f"{where} {'input' if name in model.inputs else 'output'} {name!r}"
        if got.elem_type != elem_type:
            raise PackageError(f"{tensor} is {_type_name(got.elem_type)}; edgeseq's runtime "
                               f"uses {_type_name(elem_type)}")
        if got.dims is None:
            continue
        if len(got.dims) != len(axes):
            raise PackageError(f"{tensor} has {len(got.dims)} dimensions; edgeseq's runtime "
                               f"uses {len(axes)}")
        for axis, (size, want) in enumerate(zip(got.dims, axes)):
            if want is not None and isinstance(size, int) and size != want[1]:
                raise PackageError(f"{tensor} has size {size} in dimension {axis}, but the "
                                   f"manifest's {want[0]} is {want[1]}")


GRAPH_ROLES = {names.ENCODER_FILE: "encoder", names.DECODER_FILE: "decoder"}


def check_graph(file: str, data: bytes, files: dict[str, dict[str, Any]],
                tensors: dict[str, dict[str, list[str]]],
                signatures: dict[str, Signature] | None = None,
                package: str = "") -> ModelSummary:
    """Refuse graph `file` (its bytes `data`) unless it passes every check above.
    files: the manifest's file table; tensors: manifest.tensor_names(); signatures:
    graph_signatures(manifest.arch) (None: types and sizes unchecked); package: the
    package directory, for the messages."""
    model = read_model(data, file)
    _check_operators(file, model)
    _check_external(file, model, files)
    role = GRAPH_ROLES.get(file)
    if role is not None:
        check_io(role, {"inputs": model.inputs, "outputs": model.outputs}, tensors[role])
        if signatures is not None:
            check_types(f"{package}: {file}" if package else file, model, signatures[role])
    return model


def check_graphs(directory: Path, files: dict[str, dict[str, Any]],
                 tensors: dict[str, dict[str, list[str]]], arch: ArchSpec | None = None) -> None:
    """check_graph for every .onnx file the manifest lists (paths already verified);
    with `arch`, the graphs' types and sizes are checked against it too."""
    signatures = graph_signatures(arch) if arch is not None else None
    for file in files:
        if file.endswith(".onnx"):
            check_graph(file, (Path(directory) / file).read_bytes(), files, tensors,
                        signatures, str(directory))
