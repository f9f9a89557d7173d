"""The demo's web server: the standard library's ThreadingHTTPServer (one thread per
request, engines shared through the cache), bound to localhost unless told otherwise."""
from __future__ import annotations

import ipaddress
import socket
from http.server import ThreadingHTTPServer
from pathlib import Path

from .handlers import DemoHandler
from .inputs import Limits
from .service import Demo


class DemoServer(ThreadingHTTPServer):
    daemon_threads = True  # a client that never finishes does not hold up shutdown

    def __init__(self, host: str, port: int, demo: Demo):
        self.demo = demo
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), DemoHandler)

    @property
    def is_loopback(self) -> bool:
        host = self.server_address[0]
        return host == "localhost" or ipaddress.ip_address(host).is_loopback

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def make_server(host: str = "127.0.0.1", port: int = 8000, models_dir: Path | None = None,
                limits: Limits | None = None) -> DemoServer:
    """A bound server (port 0: a free port; see .url); call serve_forever() to run it."""
    return DemoServer(host, port, Demo.open(models_dir, limits))
