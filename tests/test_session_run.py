"""How the runner calls onnxruntime: past InferenceSession.run's per-call Python checks,
with the same results; anything else that runs feeds (a timing wrapper) through its run()."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from edgeseq.runtime.decoder import run_session
from onnx import TensorProto, helper
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from edgeseq.errors import ProviderFailure


def _add_one() -> ort.InferenceSession:
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "one"], ["y"])], "add_one",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
        [helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10  # what edgeseq's exporter writes; the oldest onnxruntime it supports reads up to 10
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_a_session_runs_to_the_results_its_run_method_gives():
    session, x = _add_one(), np.arange(4, dtype=np.float32)
    np.testing.assert_array_equal(run_session(session, ["y"], {"x": x})[0], x + 1)
    np.testing.assert_array_equal(run_session(session, ["y"], {"x": x})[0],
                                  session.run(["y"], {"x": x})[0])


def test_a_wrapper_around_a_session_is_run_through_its_own_run():
    class Counted:  # as bench/time_split.py wraps sessions: attributes pass through
        def __init__(self, session):
            self.session, self.calls = session, 0

        def run(self, outputs, feeds):
            self.calls += 1
            return self.session.run(outputs, feeds)

        def __getattr__(self, name):
            return getattr(self.session, name)

    wrapped = Counted(_add_one())
    assert run_session(wrapped, ["y"], {"x": np.zeros(2, np.float32)})[0].tolist() == [1.0, 1.0]
    assert wrapped.calls == 1


def test_a_provider_failing_during_a_pass_is_a_clear_error():
    """onnxruntime's own run() would print and go on with the CPU provider; the runner
    says which provider failed and how to decode on the CPU instead."""
    class Failing:
        def run(self, *args):
            raise ort_state.EPFail("CUDA failure 2: out of memory")

    session = _add_one()
    session._sess = Failing()
    with pytest.raises(ProviderFailure, match="CPUExecutionProvider failed during a pass: CUDA "
                                              "failure 2: out of memory; load the package with "
                                              "provider='cpu'"):
        run_session(session, ["y"], {"x": np.zeros(1, np.float32)})
