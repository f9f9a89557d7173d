"""A small ONNX graph builder: nodes, constants and weight references, with sub-builders
for the branches of If nodes. Weights live in a WeightStore shared by every graph of a
package, so a tensor used by encoder and decoder is written once."""
from __future__ import annotations

import itertools
from typing import Iterator

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 20
MS_DOMAIN = "com.microsoft"


class WeightStore:
    """Named numpy tensors that become initializers (external data in weights.bin)."""

    def __init__(self, tensors: dict[str, np.ndarray]):
        self._tensors = dict(tensors)
        self._aliases: dict[str, str] = {}  # alias -> stored tensor with the same bytes

    def __contains__(self, name: str) -> bool:
        return name in self._tensors or name in self._aliases

    def get(self, name: str) -> np.ndarray:
        return self._tensors[self.source_of(name)]

    def alias(self, name: str, source: str) -> str:
        """A second initializer name for `source`'s bytes (written once, see package.py)."""
        self._aliases[name] = self.source_of(source)
        return name

    def source_of(self, name: str) -> str:
        return self._aliases.get(name, name)

    def put(self, name: str, value: np.ndarray) -> str:
        self._tensors[name] = value
        return name

    def names(self) -> list[str]:
        return list(self._tensors)


class GraphBuilder:
    def __init__(self, store: WeightStore, counter: Iterator[int] | None = None,
                 root: "GraphBuilder | None" = None):
        self.store = store
        self.nodes: list[onnx.NodeProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self.used_weights: list[str] = [] if root is None else root.used_weights
        self._counter = counter if counter is not None else itertools.count()
        self._root = root

    def fresh(self, hint: str) -> str:
        return f"{hint}_{next(self._counter)}"

    def sub(self) -> "GraphBuilder":
        """A builder for an If branch: same names, weights registered on the root graph."""
        return GraphBuilder(self.store, self._counter, self._root or self)

    def op(self, op_type: str, *inputs: str, outputs: int = 1, domain: str = "",
           **attrs) -> str | list[str]:
        names = [self.fresh(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, domain=domain or None,
                                           name=self.fresh("n_" + op_type), **attrs))
        return names[0] if outputs == 1 else names

    def weight(self, name: str) -> str:
        """Reference a stored tensor; it becomes an initializer of the root graph."""
        if name not in self.store:
            raise KeyError(f"weight {name!r} missing from the checkpoint")
        if name not in self.used_weights:
            self.used_weights.append(name)
        return name

    def const(self, value, dtype=np.int64) -> str:
        array = np.asarray(value, dtype=dtype)
        name = self.fresh("const")
        self.nodes.append(helper.make_node(
            "Constant", [], [name], value=numpy_helper.from_array(array, name)))
        return name

    def add_input(self, name: str, elem_type: int, shape: list) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, elem_type, shape))
        return name

    def add_output(self, value: str, name: str, elem_type: int = TensorProto.FLOAT,
                   shape: list | None = None) -> None:
        """Expose `value` as output `name` (through an Identity when the names differ)."""
        if value != name:
            self.nodes.append(helper.make_node("Identity", [value], [name]))
        self.outputs.append(helper.make_tensor_value_info(name, elem_type, shape))

    def graph(self, name: str) -> onnx.GraphProto:
        return helper.make_graph(self.nodes, name, self.inputs, self.outputs)

    def model(self, name: str) -> onnx.ModelProto:
        """The root graph as a model, its weights still to be attached by the writer."""
        model = helper.make_model(
            self.graph(name), producer_name="edgeseq",
            opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)])
        model.ir_version = 10
        return model
