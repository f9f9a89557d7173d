"""The one place that makes onnxruntime sessions: options written out, providers named,
unavailable providers replaced by CPU with a warning, and what really ran reportable."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from edgeseq.errors import OptionsError, PackageError, ProviderError

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "qnn": "QNNExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "directml": "DmlExecutionProvider",
    "dml": "DmlExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider",
}


@dataclass(frozen=True)
class SessionConfig:
    provider: str = "cpu"
    threads: int = 0  # 0: onnxruntime's default (all physical cores)
    # Idle intra-op threads spin-wait for work by default. On a device whose cores other
    # programs also use, spinning steals their time and waits behind them: measured on a
    # shared 2-core machine, Whisper tiny.en int8 ran at 13.3x real time spinning and
    # 16.6x without (bench/transcribe.py --ort-no-spin).
    spin: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.provider, str):
            raise ProviderError(f"provider must be a name such as 'cpu', got {self.provider!r}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 0:
            raise OptionsError(f"threads must be an int >= 0 (0: onnxruntime's default), "
                               f"got {self.threads!r}")


def resolve_provider(name: str) -> list[str]:
    """onnxruntime provider list for `name`, CPU last as the fallback for unsupported ops."""
    key = name.lower().strip()
    if key not in PROVIDERS:
        raise ProviderError(f"unknown provider {name!r}; choose one of {sorted(PROVIDERS)}")
    wanted = PROVIDERS[key]
    available = ort.get_available_providers()
    if wanted not in available:
        warnings.warn(f"provider {name!r} ({wanted}) is not in this onnxruntime build "
                      f"(available: {', '.join(available)}); running on CPU", RuntimeWarning,
                      stacklevel=3)
        return ["CPUExecutionProvider"]
    return [wanted] if wanted == "CPUExecutionProvider" else [wanted, "CPUExecutionProvider"]


def make_session(path: Path, config: SessionConfig) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = config.threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    # Per-step shapes change (the KV prefix grows); memory patterns would be re-planned
    # every step and the arena grows with them, so both are off (measured: no speed loss).
    opts.enable_mem_pattern = False
    if not config.spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), sess_options=opts,
                                    providers=resolve_provider(config.provider))
    except ProviderError:
        raise
    except Exception as err:  # onnxruntime raises its own untyped errors
        raise PackageError(f"onnxruntime could not load {path.name}: {err}") from err
