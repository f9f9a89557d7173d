"""edgeseq: small encoder-decoder models on onnxruntime, fast and lean on devices.

    engine = edgeseq.load("default", provider="cpu", threads=2)   # or a package directory
    result = engine.generate("She go to school every days.", max_new_tokens=32)
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# onnxruntime 1.29+ records telemetry on Linux and macOS too (an event at start, then
# session and model events, kept under ~/.cache/Microsoft and uploaded); it reads this
# once, before its first use. An on-device runtime stays quiet unless its user sets
# ORT_DISABLE_TELEMETRY=0 (or imported onnxruntime before edgeseq).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"
__all__ = ["load", "__version__"]

if TYPE_CHECKING:
    from edgeseq.runtime.engine import Engine


def load(package: str, provider: str = "cpu", threads: int = 0, **options: Any) -> "Engine":
    """Load a model package directory (or "default", the embedded model)."""
    from edgeseq.runtime.engine import Engine
    return Engine.load(package, provider=provider, threads=threads, **options)
