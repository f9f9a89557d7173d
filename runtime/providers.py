"""The one place that makes onnxruntime sessions: options written out, providers named,
unavailable providers replaced by CPU with a warning, and what really ran reportable."""
from __future__ import annotations

import re
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from edgeseq.errors import OnnxruntimeVersionError, OptionsError, PackageError, ProviderError

if TYPE_CHECKING:
    from .rewritten_graph import RewrittenGraph

# 1.22 lacks the process-wide thread pool's sizes (the CLI's shared pool) and 8-bit
# MatMulNBits outside packed weights (layer skipping's If branches); the whole suite
# passes on 1.23.2 (pyproject.toml says the same).
MIN_ONNXRUNTIME = (1, 23)


def check_onnxruntime(version: str | None = None) -> None:
    """OnnxruntimeVersionError, saying what to install, if `version` (by default the
    installed onnxruntime's) is too old."""
    version = ort.__version__ if version is None else version
    numbers = tuple(int(n) for n in re.findall(r"\d+", version)[:2])
    if numbers < MIN_ONNXRUNTIME:
        wanted = ".".join(map(str, MIN_ONNXRUNTIME))
        raise OnnxruntimeVersionError(f"edgeseq needs onnxruntime {wanted} or later, found "
                                      f"{version}: pip install -U 'onnxruntime>={wanted}'")


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
    # Opt-in: one process-wide intra-op pool for every edgeseq session (SharedThreadPool).
    shared_pool: bool = False
    # The encoder session's own thread count; None: `threads`, or 1 for a narrow model
    # (encoder_thread_count). Its idle workers sleep, and waking them competes with the
    # decoder's still-spinning worker when calls come back to back (bench/thread_pools.py
    # measures a package).
    encoder_threads: int | None = None
    # int8 encoders' weights as uint8 with zero point 128 (the same integers) for
    # onnxruntime's integer GEMM, rewritten in memory at load. None: only on x86 CPUs
    # without VNNI, where the stored uint8 x int8 product saturates and costs accuracy
    # (runtime/integer_gemm.py); True / False: always / never.
    unsigned_int8_weights: bool | None = None
    # int8 decoders' 8-bit products as fp32 products over the same weights, dequantized
    # at load. None: on the CPU provider of x86 CPUs without VNNI, for decoders whose
    # dequantized weights take at most 8 MB, of packages that recommend a drafter
    # (speculation's many-token passes are faster that way, one-token passes slower:
    # runtime/decoder_products.py); True / False: always / never.
    fp32_decoder_products: bool | None = None
    # Every decoder pass with an even number of rows where this CPU's MatMulNBits compute
    # rows alike only in pairs (runtime/nbits_rows.py), which keeps greedy speculation
    # token-identical to plain greedy. None: for packages that recommend a drafter; True:
    # for any package (plain greedy 1.20x-1.23x the time on t5-small-shaped int8
    # weights, AMD Zen 4: bench/even_rows.py); False: never. No effect where the CPU computes a lone row as any other.
    even_decoder_rows: bool | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.provider, str):
            raise ProviderError(f"provider must be a name such as 'cpu', got {self.provider!r}")
        if not _is_thread_count(self.threads):
            raise OptionsError(f"threads must be an int in 0..{MAX_THREADS} (0: onnxruntime's "
                               f"default), got {self.threads!r}")
        for name in ("spin", "shared_pool"):
            if not isinstance(getattr(self, name), bool):
                raise OptionsError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.unsigned_int8_weights not in (None, True, False):
            raise OptionsError(f"unsigned_int8_weights must be None, True or False, "
                               f"got {self.unsigned_int8_weights!r}")
        for name in ("fp32_decoder_products", "even_decoder_rows"):
            if getattr(self, name) not in (None, True, False):
                raise OptionsError(f"{name} must be None, True or False, got {getattr(self, name)!r}")
        if self.encoder_threads is not None:
            if not _is_thread_count(self.encoder_threads):
                raise OptionsError(f"encoder_threads must be an int in 0..{MAX_THREADS} or None, "
                                   f"got {self.encoder_threads!r}")
            if self.shared_pool:
                raise OptionsError("encoder_threads sets the encoder's own pool; with "
                                   "shared_pool=True every session uses the process-wide pool")


# Below this width an encoder's matrix products are too small to split between threads,
# and waking a sleeping second worker costs more than it brings. Isolated encodes of 25
# tokens, 2 cores, int8: d_model 128 (the default model) 0.75 ms on one thread vs 0.98 on
# two; d_model 512 (t5-small) 8.6 vs 6.0 ms.
NARROW_MODEL = 256


def encoder_thread_count(config: SessionConfig, d_model: int) -> int:
    """The encoder session's threads: the caller's choice, else one for a narrow model
    (per-session pools only: the shared pool has its own size), else `threads`."""
    if config.encoder_threads is not None:
        return config.encoder_threads
    if d_model < NARROW_MODEL and not config.shared_pool:
        return 1
    return config.threads


# more threads than any device here has cores: onnxruntime would try to create them all
# (10**9 ends in std::bad_alloc, reported as if the package were at fault)
MAX_THREADS = 1024


def _is_thread_count(value: object) -> bool:
    """An int in 0..MAX_THREADS (a bool is not a count)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_THREADS


# CUDA runs fp32 matrix products in TF32 by default (10-bit mantissas): measured on an H100,
# tiny fp32 packages' logits then differed from CPU's by 1.4-2.2e-3 of the largest logit,
# over the 1e-3 that export holds fp32 packages to (bench/cuda_check.py, test_cuda_provider)
PROVIDER_OPTIONS = {"CUDAExecutionProvider": {"use_tf32": "0"}}


def resolve_provider(name: str) -> list:
    """onnxruntime provider list for `name` (a name, or a name and its options), CPU last
    as the fallback for unsupported ops."""
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
    if wanted == "CPUExecutionProvider":
        return [wanted]
    return [(wanted, PROVIDER_OPTIONS[wanted]) if wanted in PROVIDER_OPTIONS else wanted,
            "CPUExecutionProvider"]


class SharedThreadPool:
    """onnxruntime's process-wide intra-op thread pool, for processes that run nothing
    but edgeseq (the CLI, the demo, benchmark children).

    Why: an engine has two sessions. With a pool each, the idle workers of one spin and
    take the cores the other needs (bench/thread_pools.py, t5-small int8, 2 threads:
    first token 51 ms with both spinning, 31 ms with a sleeping encoder, 25 ms with one
    shared pool). onnxruntime allows one such pool per process, and once it exists every
    later session in the process must use it: a library cannot impose that on the
    application around it, so it is opt-in (`shared_pool=True`, on by default in the CLI)."""

    def __init__(self) -> None:
        self.threads: int | None = None
        self._lock = threading.Lock()

    def join(self, threads: int) -> None:
        """Create the pool with `threads` workers, or use the one that exists."""
        with self._lock:
            if self.threads is None:
                ort_state.set_global_thread_pool_sizes(threads, 1)
                self.threads = threads
            elif self.threads != threads:
                warnings.warn(f"the shared thread pool has {self.threads or 'default'} threads; "
                              f"{threads} requested", RuntimeWarning, stacklevel=4)


SHARED_POOL = SharedThreadPool()


def make_session(path: Path, config: SessionConfig, spin: bool | None = None,
                 threads: int | None = None, profile: Path | None = None,
                 graph: "RewrittenGraph | None" = None,
                 providers: list | None = None) -> ort.InferenceSession:
    """A session for the graph at `path`, or for `graph`, that graph rewritten in memory
    (runtime/rewritten_graph.py); `spin` and `threads` override config.spin and
    config.threads for this session's own pool. `profile`: onnxruntime's profiler writes
    its trace under this file prefix (runtime/placement.py). `providers`: resolve_provider's
    list, when a package's sessions resolve it once (its CPU fallback warned about once)."""
    spin = config.spin if spin is None else spin
    threads = config.threads if threads is None else threads
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if config.shared_pool or SHARED_POOL.threads is not None:  # once it exists, all must use it
        SHARED_POOL.join(config.threads)
        opts.use_per_session_threads = False
    else:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        if not spin:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    # Per-step shapes change (the KV prefix grows); memory patterns would be re-planned
    # every step and the arena grows with them, so both are off (measured: no speed loss).
    opts.enable_mem_pattern = False
    if profile is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = str(profile)
    if graph is not None:
        graph.session_options(opts)
    try:
        return ort.InferenceSession(str(path) if graph is None else graph.model, sess_options=opts,
                                    providers=providers or resolve_provider(config.provider))
    except ProviderError:
        raise
    except Exception as err:  # onnxruntime raises its own untyped errors
        raise PackageError(f"onnxruntime could not load {path.name}: {err}") from err
