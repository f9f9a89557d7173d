"""The offline assistant demo: a local web page (standard-library HTTP server) and a
terminal mode over the edgeseq runtime. Nothing is loaded or started at import.

    server = make_server("127.0.0.1", 8000, Path("models")); server.serve_forever()
    run_tui(Path("models"))
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .server import DemoServer

__all__ = ["make_server", "run_tui"]


def make_server(host: str, port: int, models_dir: Path | None) -> "DemoServer":
    """A ready HTTP server for the demo page (call serve_forever; port 0 picks a free one)."""
    from .server import make_server as make
    return make(host, port, models_dir)


def run_tui(models_dir: Path | None) -> int:
    """The interactive terminal mode; returns an exit status."""
    from .tui import run
    return run(models_dir)
