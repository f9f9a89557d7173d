"""edgeseq: small encoder-decoder models on onnxruntime, fast and lean on devices.

    engine = edgeseq.load("default", provider="cpu", threads=2)   # or a package directory
    result = engine.generate("She go to school every days.", max_new_tokens=32)
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["load", "__version__"]

if TYPE_CHECKING:
    from edgeseq.runtime.engine import Engine


def load(package: str, provider: str = "cpu", threads: int = 0, **options: Any) -> "Engine":
    """Load a model package directory (or "default", the embedded model)."""
    from edgeseq.runtime.engine import Engine
    return Engine.load(package, provider=provider, threads=threads, **options)
