"""The protobuf wire format of ONNX models, read and written without the `onnx` package
(the runtime depends only on onnxruntime, numpy and tokenizers): a message is walked
field by field as spans of the serialized bytes, and rewritten by copying the fields it
keeps and encoding the few it changes."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5

# Field numbers of onnx.proto3 (only those edgeseq reads or writes).
MODEL_GRAPH, MODEL_OPSET_IMPORT, MODEL_FUNCTIONS = 7, 8, 25
OPSET_DOMAIN = 1
GRAPH_NODE, GRAPH_NAME, GRAPH_INITIALIZER, GRAPH_VALUE_INFO = 1, 2, 5, 13
GRAPH_INPUT, GRAPH_OUTPUT, GRAPH_SPARSE_INITIALIZER = 11, 12, 15
NODE_INPUT, NODE_OUTPUT, NODE_NAME, NODE_OP_TYPE, NODE_ATTRIBUTE, NODE_DOMAIN = 1, 2, 3, 4, 5, 7
ATTR_I = 3
ATTR_NAME, ATTR_T, ATTR_G, ATTR_TENSORS, ATTR_GRAPHS = 1, 5, 6, 10, 11
ATTR_SPARSE_TENSOR, ATTR_SPARSE_TENSORS = 22, 23
TENSOR_DIMS, TENSOR_DATA_TYPE, TENSOR_NAME, TENSOR_RAW_DATA = 1, 2, 8, 9
TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION = 13, 14
TENSOR_LOCATION_EXTERNAL = 1
DATA_TYPE_FLOAT, DATA_TYPE_UINT8, DATA_TYPE_INT8 = 1, 2, 3
DATA_TYPE_INT32, DATA_TYPE_INT64, DATA_TYPE_BOOL, DATA_TYPE_FLOAT16 = 6, 7, 9, 10
SPARSE_VALUES, SPARSE_INDICES = 1, 2
ENTRY_KEY, ENTRY_VALUE = 1, 2
VALUE_INFO_NAME, VALUE_INFO_TYPE = 1, 2
TYPE_TENSOR = 1                            # TypeProto.tensor_type
TENSOR_TYPE_ELEM, TENSOR_TYPE_SHAPE = 1, 2  # TypeProto.Tensor
SHAPE_DIM = 1
DIM_VALUE, DIM_PARAM = 1, 2


class Malformed(Exception):
    """The bytes are not a well-formed protobuf message."""


def read_varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise Malformed("a varint runs past the end of its message")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise Malformed("a varint is longer than 10 bytes")


def fields(buf: bytes, start: int, end: int) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) per field of buf[start:end]: an int for varints,
    a (start, end) span for length-delimited fields, None for fixed-width ones."""
    for number, wire, value, _ in fields_with_extent(buf, start, end):
        yield number, wire, value


def fields_with_extent(buf: bytes, start: int, end: int) -> Iterator[tuple[int, int, Any, tuple[int, int]]]:
    """Like `fields`, with each field's whole encoding (key included) as a span: what a
    rewrite copies unchanged."""
    pos = start
    while pos < end:
        first = pos
        key, pos = read_varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise Malformed("field number 0")
        if wire == VARINT:
            value, pos = read_varint(buf, pos, end)
            yield number, wire, value, (first, pos)
            continue
        if wire == LENGTH:
            length, pos = read_varint(buf, pos, end)
            value, pos = (pos, pos + length), pos + length
        elif wire in (FIXED64, FIXED32):
            value, pos = None, pos + (8 if wire == FIXED64 else 4)
        else:
            raise Malformed(f"wire type {wire} (groups are not used by ONNX)")
        if pos > end:
            raise Malformed("a field runs past the end of its message")
        yield number, wire, value, (first, pos)


def spans(buf: bytes, span: tuple[int, int], number: int) -> Iterator[tuple[int, int]]:
    """Spans of the length-delimited fields `number` of the message at `span`."""
    for n, wire, value in fields(buf, *span):
        if n == number and wire == LENGTH:
            yield value


def text(buf: bytes, span: tuple[int, int]) -> str:
    try:
        return buf[span[0]:span[1]].decode("utf-8")
    except UnicodeDecodeError as err:
        raise Malformed(f"a string field is not UTF-8: {err}") from err


def string(buf: bytes, span: tuple[int, int], number: int) -> str:
    """The last string field `number` (protobuf: the last occurrence wins), or ""."""
    value = ""
    for s in spans(buf, span, number):
        value = text(buf, s)
    return value


def varints(buf: bytes, span: tuple[int, int], number: int) -> list[int]:
    """Every value of the repeated integer field `number`, packed or not."""
    out = []
    for n, wire, value in fields(buf, *span):
        if n != number:
            continue
        if wire == VARINT:
            out.append(value)
        elif wire == LENGTH:  # packed
            pos, end = value
            while pos < end:
                item, pos = read_varint(buf, pos, end)
                out.append(item)
    return out


@dataclass(frozen=True)
class WireTensor:
    """A TensorProto's header, as read from the wire."""
    name: str
    data_type: int
    dims: tuple[int, ...]
    entries: dict[str, str]       # external data: location, offset, length
    raw: tuple[int, int] | None   # span of raw_data inside the graph


def read_tensor(buf: bytes, span: tuple[int, int]) -> WireTensor:
    name, data_type, entries, external, raw = "", 0, {}, False, None
    for n, wire, value, _ in fields_with_extent(buf, *span):
        if n == TENSOR_NAME and wire == LENGTH:
            name = text(buf, value)
        elif n == TENSOR_DATA_TYPE and wire == VARINT:
            data_type = value
        elif n == TENSOR_RAW_DATA and wire == LENGTH:
            raw = value
        elif n == TENSOR_EXTERNAL_DATA and wire == LENGTH:
            entries[string(buf, value, ENTRY_KEY)] = string(buf, value, ENTRY_VALUE)
        elif n == TENSOR_DATA_LOCATION and wire == VARINT:
            external = value == TENSOR_LOCATION_EXTERNAL
    dims = tuple(varints(buf, span, TENSOR_DIMS))
    return WireTensor(name, data_type, dims, entries if external else {}, raw)


def tensor_data(tensor: WireTensor, data: bytes, folder: Path, nbytes: int) -> np.ndarray:
    """A tensor's `nbytes` bytes (uint8), read from its external file in `folder` or from
    its raw_data in `data` (the graph's bytes). ValueError where the stored length differs
    or the data is cut short."""
    if tensor.entries:
        length = int(tensor.entries.get("length", nbytes))
        if length != nbytes:
            raise ValueError(f"tensor {tensor.name!r} holds {length} bytes, not {nbytes}")
        raw = np.fromfile(folder / tensor.entries["location"], np.uint8, nbytes,
                          offset=int(tensor.entries.get("offset", 0)))
    elif tensor.raw is not None:
        raw = np.frombuffer(data, np.uint8, min(nbytes, tensor.raw[1] - tensor.raw[0]),
                            offset=tensor.raw[0])
    else:
        raise ValueError(f"tensor {tensor.name!r} holds no raw or external data")
    if raw.size != nbytes:
        raise ValueError(f"tensor {tensor.name!r} is cut short")
    return raw


@dataclass(frozen=True)
class WireNode:
    """A NodeProto's op_type, domain and inputs."""
    op_type: str
    domain: str
    inputs: tuple[str, ...]


def read_node(buf: bytes, span: tuple[int, int]) -> WireNode:
    op_type, domain, inputs = "", "", []
    for n, wire, value, _ in fields_with_extent(buf, *span):
        if wire != LENGTH:
            continue
        if n == NODE_INPUT:
            inputs.append(text(buf, value))
        elif n == NODE_OP_TYPE:
            op_type = text(buf, value)
        elif n == NODE_DOMAIN:
            domain = text(buf, value)
    return WireNode(op_type, domain, tuple(inputs))


def node_attributes(buf: bytes, node: tuple[int, int]) -> tuple[dict[str, int], list[tuple[int, int]]]:
    """A node's integer attributes (name -> value) and the spans of the graphs it holds."""
    ints, graphs = {}, []
    for n, wire, value, _ in fields_with_extent(buf, *node):
        if n != NODE_ATTRIBUTE or wire != LENGTH:
            continue
        name = string(buf, value, ATTR_NAME)
        for an, aw, av, _ in fields_with_extent(buf, *value):
            if an == ATTR_I and aw == VARINT:
                ints[name] = av
            elif an in (ATTR_G, ATTR_GRAPHS) and aw == LENGTH:
                graphs.append(av)
    return ints, graphs


# -- writing -----------------------------------------------------------------------------
def encode_varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # protobuf's two's complement for negative int64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def varint_field(number: int, value: int) -> bytes:
    return encode_varint(number << 3 | VARINT) + encode_varint(value)


def length_field(number: int, payload: bytes | str) -> bytes:
    data = payload.encode("utf-8") if isinstance(payload, str) else payload
    return encode_varint(number << 3 | LENGTH) + encode_varint(len(data)) + data
