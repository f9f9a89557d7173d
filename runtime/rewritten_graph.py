"""A package graph rewritten in memory at load, for this machine (runtime/integer_gemm.py,
runtime/decoder_products.py): the serialized model handed to onnxruntime as bytes, the
weights it now reads from buffers, and the folder it reads its other external weights
from. The package on disk is unchanged."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from edgeseq.onnx_wire import LENGTH, MODEL_GRAPH, fields_with_extent, length_field

# Where onnxruntime reads the external weights of a graph it is given as bytes.
FOLDER_KEY = "session.model_external_initializers_file_folder_path"


@dataclass
class RewrittenGraph:
    """`model`, a serialized ModelProto whose weights named in `external` are handed to
    onnxruntime as buffers (name -> OrtValue) and whose other external tensors
    onnxruntime reads from `folder`, as it would for the file. onnxruntime copies the
    buffers when it makes the session (1.22 to 1.32: the outputs stay identical after
    they are freed, and its memory grows by their size), so they need not outlive that
    call; kept, they would cost their size twice."""
    model: bytes
    folder: Path
    external: dict[str, ort.OrtValue]
    weights: tuple[str, ...]  # the weights the rewrite changed (stored names)

    @property
    def buffer_bytes(self) -> int:
        """Bytes of the weights handed over as buffers."""
        return sum(value.numpy().nbytes for value in self.external.values())

    def session_options(self, opts: ort.SessionOptions) -> None:
        opts.add_session_config_entry(FOLDER_KEY, str(self.folder))
        opts.add_external_initializers(list(self.external), list(self.external.values()))


def model_graph(data: bytes) -> tuple[int, int]:
    """The span of a serialized ModelProto's graph."""
    return next(value for n, wire, value, _ in fields_with_extent(data, 0, len(data))
                if n == MODEL_GRAPH and wire == LENGTH)


def with_graph(data: bytes, graph: bytes) -> bytes:
    """The ModelProto `data` with its graph replaced by `graph` (a GraphProto's fields)."""
    new_graph = length_field(MODEL_GRAPH, graph)
    return b"".join(new_graph if n == MODEL_GRAPH and wire == LENGTH
                    else data[extent[0]:extent[1]]
                    for n, wire, _, extent in fields_with_extent(data, 0, len(data)))
