"""Row-invariant decoder passes: every row of a k-token pass computes bit for bit what a
one-token pass at that position computes, so greedy speculation returns exactly the
plain greedy tokens, near-ties included.

Why the graph needs it: onnxruntime's CPU MultiHeadAttention multiplies with MLAS's SGEMM,
which takes a separate kernel for a one-row product (M == 1 with alpha 1: the
probabilities times V); its sums round differently from the many-row kernel, by ~1e-7.
In an int8 decoder the next MatMulNBits quantizes its activations per row, and that
difference can move one across a rounding step: on the default model, 2 of JFLEG's 754
sentences came out differently with input drafting. Every other operator of a decoder
computes each row alone (8-bit MatMulNBits rows are identical alone or among others on
the Xeon this was measured on; CPUs that pair rows: runtime/nbits_rows.py;
fp32 MatMul multiplies by weights packed at load, a path without the one-row kernel;
norms and element-wise operators are per row), so the attention is the one place to fix.
The fix: give each attention query one more row (a copy of the last, with the last
row's mask), so the kernel never sees a one-row query, and drop that row from the output.
Tested bitwise for fp32, fp16 and int8 decoders; an int4 decoder's rows still differ with
padded queries (4-bit MatMulNBits has a one-row kernel too: every linear would need the
extra row), so int4 is left as it is.

Applied by the exporter to fp32, fp16 and int8 decoders, and to packages exported before
(`edgeseq upgrade PKG`, which rewrites decoder.onnx and the manifest)."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgeseq import names
from edgeseq.errors import PackageError
from edgeseq.manifest import ROW_INVARIANT_QUANTS, read_manifest, verify_files

PREFIX = "row_pad"  # names of the values this pass adds


def applies_to(quant: str) -> bool:
    """Whether the exporter makes a decoder of this quantization row-invariant."""
    return quant in ROW_INVARIANT_QUANTS


def _const(name: str, values: list[int]) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name],
                            value=numpy_helper.from_array(np.array(values, np.int64), name))


def _pad(value: str, pads: str, out: str) -> onnx.NodeProto:
    """`value` with its query axis one row longer: the new row repeats the last."""
    return helper.make_node("Pad", [value, pads], [out], mode="edge")


def subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    """The graphs a node holds (an If's branches)."""
    return [a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH]


def all_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node of `graph`, its If branches' included."""
    for node in graph.node:
        yield node
        for sub in subgraphs(node):
            yield from all_nodes(sub)


def pad_attention_queries(model: onnx.ModelProto) -> int:
    """Rewrite every MultiHeadAttention of `model` (If branches included) so its query has
    one more row than the pass's tokens; returns how many were rewritten. A bias made in
    the main graph is padded once there, next to where it is made, not once per layer."""
    main = model.graph
    if any(o.startswith(PREFIX + ".") for n in main.node for o in n.output):
        raise ValueError("the decoder's attention queries are padded already")
    q_pads, bias_pads = f"{PREFIX}.q_pads", f"{PREFIX}.bias_pads"
    starts, ends, axes = f"{PREFIX}.starts", f"{PREFIX}.ends", f"{PREFIX}.axes"
    # [B, n, inner] gets row n (a copy of row n - 1); a bias [B, H, n, S] likewise
    constants = [_const(q_pads, [0, 0, 0, 0, 1, 0]), _const(bias_pads, [0, 0, 0, 0, 0, 0, 1, 0]),
                 _const(starts, [0]), _const(ends, [-1]), _const(axes, [1])]
    made_in_main = {o for n in main.node for o in n.output} | {i.name for i in main.input}
    hoisted: dict[str, str] = {}  # main-graph bias -> its padded copy
    count = 0

    def rewrite(graph: onnx.GraphProto) -> None:
        nonlocal count
        nodes = []
        for node in graph.node:
            for sub in subgraphs(node):
                rewrite(sub)
            if node.op_type != "MultiHeadAttention":
                nodes.append(node)
                continue
            tag = f"{PREFIX}.{count}"
            count += 1
            inputs, outputs = list(node.input), list(node.output)
            nodes.append(_pad(inputs[0], q_pads, f"{tag}.query"))
            inputs[0] = f"{tag}.query"
            bias = inputs[5] if len(inputs) > 5 else ""
            if bias and bias in made_in_main:
                hoisted.setdefault(bias, f"{PREFIX}.bias.{len(hoisted)}")
                inputs[5] = hoisted[bias]
            elif bias:  # made inside this branch: padded here
                nodes.append(_pad(bias, bias_pads, f"{tag}.bias"))
                inputs[5] = f"{tag}.bias"
            attention = onnx.NodeProto()
            attention.CopyFrom(node)
            del attention.input[:], attention.output[:]
            attention.input.extend(inputs)
            attention.output.extend([f"{tag}.out", *outputs[1:]])
            nodes += [attention,
                      helper.make_node("Slice", [f"{tag}.out", starts, ends, axes], [outputs[0]])]
        del graph.node[:]
        graph.node.extend(nodes)

    rewrite(main)
    if not count:
        return 0
    pads = {bias: _pad(bias, bias_pads, padded) for bias, padded in hoisted.items()}
    nodes = constants + [pads.pop(i.name) for i in main.input if i.name in pads]
    for node in main.node:
        nodes.append(node)
        nodes += [pads.pop(o) for o in node.output if o in pads]
    del main.node[:]
    main.node.extend(nodes)
    return count


def upgrade_package(directory: Path) -> bool:
    """Make a package exported before this pass row-invariant, in place: its decoder graph
    and the manifest's record of that file. False when there is nothing to do (int4,
    or done already)."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    verify_files(directory, manifest)  # only a package whose files are what it lists
    if not applies_to(manifest.quant) or manifest.row_invariant_decoder:
        return False
    path = directory / names.DECODER_FILE
    model = onnx.load(str(path), load_external_data=False)
    if not pad_attention_queries(model):
        raise PackageError(f"{path} has no MultiHeadAttention to make row-invariant")
    graph = model.SerializeToString()
    manifest_path = directory / names.MANIFEST_FILE
    data = json.loads(manifest_path.read_text())
    data["files"][names.DECODER_FILE] = {"sha256": hashlib.sha256(graph).hexdigest(),
                                         "bytes": len(graph)}
    data["row_invariant_decoder"] = True
    # both files written in full before either replaces its original: an interruption or
    # a full disk leaves the package as it was (only the two renames run back to back)
    staged = []
    try:
        for target, content in ((path, graph), (manifest_path, json.dumps(data, indent=1).encode())):
            staged.append((_staged(target, content), target))
        for tmp, target in staged:
            tmp.replace(target)
    except OSError as err:
        raise PackageError(f"{directory}: could not write the upgraded package: {err}") from err
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    return True


def _staged(path: Path, data: bytes) -> Path:
    """`data` in a new temporary file beside `path` (a unique name: two upgrades of one
    package do not write into each other's)."""
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp
