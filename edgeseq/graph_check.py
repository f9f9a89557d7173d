"""Check a package's ONNX graphs before onnxruntime sees them, without the `onnx`
package (the runtime depends only on onnxruntime, numpy and tokenizers).

A minimal protobuf wire-format reader walks ModelProto -> GraphProto -> NodeProto, the
subgraphs held by node attributes (If branches), every TensorProto's external-data
entries and the model's opset imports. A graph is refused when it

- uses an operator domain other than the default ONNX domain and com.microsoft, or an
  operator edgeseq's exporter never emits (ALLOWED_OPS), or defines model-local functions;
- points a tensor's external data at an absolute path, a path with "..", or a file the
  manifest does not list, or past the end of that file;
- has inputs or outputs other than those the manifest declares."""
from __future__ import annotations

import ntpath
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseq import names
from edgeseq.errors import PackageError
from edgeseq.onnx_wire import (ATTR_G, ATTR_GRAPHS, ATTR_NAME, ATTR_SPARSE_TENSOR,
                               ATTR_SPARSE_TENSORS, ATTR_T, ATTR_TENSORS, ENTRY_KEY, ENTRY_VALUE,
                               GRAPH_INITIALIZER, GRAPH_INPUT, GRAPH_NODE, GRAPH_OUTPUT,
                               GRAPH_SPARSE_INITIALIZER, LENGTH, MODEL_FUNCTIONS, MODEL_GRAPH,
                               MODEL_OPSET_IMPORT, NODE_ATTRIBUTE, NODE_DOMAIN, NODE_NAME,
                               NODE_OP_TYPE, OPSET_DOMAIN, SPARSE_INDICES, SPARSE_VALUES,
                               TENSOR_DATA_LOCATION, TENSOR_EXTERNAL_DATA,
                               TENSOR_LOCATION_EXTERNAL, TENSOR_NAME, VALUE_INFO_NAME, VARINT,
                               Malformed, fields, spans, string, text)

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


@dataclass
class ModelSummary:
    """What the checks need from a ModelProto."""
    inputs: list[str] = field(default_factory=list)    # the main graph's
    outputs: list[str] = field(default_factory=list)
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
        elif main and n == GRAPH_INPUT:
            out.inputs.append(string(buf, value, VALUE_INFO_NAME))
        elif main and n == GRAPH_OUTPUT:
            out.outputs.append(string(buf, value, VALUE_INFO_NAME))


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


GRAPH_ROLES = {names.ENCODER_FILE: "encoder", names.DECODER_FILE: "decoder"}


def check_graph(file: str, data: bytes, files: dict[str, dict[str, Any]],
                tensors: dict[str, dict[str, list[str]]]) -> ModelSummary:
    """Refuse graph `file` (its bytes `data`) unless it passes every check above.
    files: the manifest's file table; tensors: manifest.tensor_names()."""
    model = read_model(data, file)
    _check_operators(file, model)
    _check_external(file, model, files)
    role = GRAPH_ROLES.get(file)
    if role is not None:
        check_io(role, {"inputs": model.inputs, "outputs": model.outputs}, tensors[role])
    return model


def check_graphs(directory: Path, files: dict[str, dict[str, Any]],
                 tensors: dict[str, dict[str, list[str]]]) -> None:
    """check_graph for every .onnx file the manifest lists (paths already verified)."""
    for file in files:
        if file.endswith(".onnx"):
            check_graph(file, (Path(directory) / file).read_bytes(), files, tensors)
