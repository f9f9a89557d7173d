"""What machine a benchmark ran on, read without importing any engine."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path


def _cpuinfo() -> dict[str, str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    info: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    return info


def _mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "missing"


def _onnxruntime_version() -> str:
    """The onnxruntime that imports (onnxruntime-gpu installs under the same module name,
    so the "onnxruntime" distribution's metadata can name another build)."""
    try:
        import onnxruntime
    except ImportError:
        return "missing"
    return onnxruntime.__version__


def _git_commit(root: Path) -> str | None:
    """HEAD's short hash, with "+changes" when Python files differ from it (a run of code
    not yet committed must not pass for the commit's)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
            text=True, timeout=10, check=False,
        )
        changed = subprocess.run(["git", "status", "--porcelain", "--", "*.py"], cwd=root,
                                 capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = out.stdout.strip()
    if not commit:
        return None
    return commit + "+changes" if changed.stdout.strip() else commit


REPO_ROOT = Path(__file__).resolve().parents[1]


def write_json(out: Path, name: str, data: dict) -> Path:
    """A benchmark's results as out/name (out created): the one place for their format."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


def rss_mb() -> float | None:
    """This process's resident memory now, in MiB (Linux /proc); None elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def machine_info(threads: int, root: Path = REPO_ROOT) -> dict:
    """CPU, cores, memory, library versions and load: enough to tell two runs apart."""
    cpu = _cpuinfo()
    flags = cpu.get("flags", "").split()
    return {
        "cpu_model": cpu.get("model name", platform.processor() or "unknown"),
        "cpu_flags": [f for f in ("avx2", "avx512f", "avx512_vnni", "amx_int8") if f in flags],
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": _mem_total_gib(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "threads": threads,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "onnxruntime": _onnxruntime_version(),
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "ctranslate2": _version("ctranslate2"),
        "git_commit": _git_commit(root),
    }


def cpu_busy_s() -> float | None:
    """Seconds of CPU time used by the whole machine since boot, all cores added."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class OthersLoad:
    """Cores kept busy by other processes while a block runs: a shared machine's noise."""

    def __enter__(self) -> "OthersLoad":
        self.cores: float | None = None
        self._start = (time.perf_counter(), cpu_busy_s(), own_cpu_s())
        return self

    def __exit__(self, *exc) -> None:
        wall0, busy0, own0 = self._start
        busy1, wall = cpu_busy_s(), time.perf_counter() - wall0
        if busy0 is None or busy1 is None or wall <= 0:
            return
        self.cores = max(0.0, ((busy1 - busy0) - (own_cpu_s() - own0)) / wall)


def wait_for_quiet(max_wait_s: float, threshold_cores: float = 0.5, window_s: float = 2.0) -> float:
    """Wait (at most max_wait_s) until other processes use under threshold_cores; return
    the seconds waited."""
    start = time.perf_counter()
    while time.perf_counter() - start < max_wait_s:
        with OthersLoad() as load:
            time.sleep(window_s)
        if load.cores is None or load.cores < threshold_cores:
            break
    return time.perf_counter() - start
