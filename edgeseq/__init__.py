"""edgeseq: small encoder-decoder models on onnxruntime, fast and lean on devices.

    engine = edgeseq.load("path/to/package", provider="cpu", threads=2)
    result = engine.generate("fix: this are wrong", max_new_tokens=32)
"""
from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["load", "__version__"]

if TYPE_CHECKING:
    from edgeseq.runtime.engine import Engine


def load(package: str, provider: str = "cpu", threads: int = 0, **options) -> "Engine":
    """Load a model package directory (or "default", the embedded model)."""
    from edgeseq.runtime.engine import Engine
    return Engine.load(package, provider=provider, threads=threads, **options)
