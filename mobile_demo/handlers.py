"""The demo's HTTP routes: the static page, the model list, text answers as Server-Sent
Events, and transcription. Bodies are size-checked before a byte is read; models are
chosen by catalog id, never by a path; every refusal is a JSON {"error": message}."""
from __future__ import annotations

import json
import logging
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator
from urllib.parse import parse_qs, urlsplit

from edgeseq.errors import EdgeseqError
from edgeseq.runtime.audio import AudioError

from .errors import (BodyTooLarge, DemoRequestError, Forbidden, LengthRequired, NotFound,
                     UnsupportedMediaType)
from .inputs import parse_audio_job, parse_text_job
from .tasks import Answer, Event, Piece

if TYPE_CHECKING:
    from .server import DemoServer
    from .service import Demo

log = logging.getLogger("edgeseq.demo")

STATIC_DIR = Path(__file__).resolve().parent / "static"
# URL -> (file in STATIC_DIR, content type): the only files a request can reach.
STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
          "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/static/style.css": ("style.css", "text/css; charset=utf-8")}
# Offline by construction: the page may load nothing from anywhere but this server.
PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
               "media-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'")
# Non-"simple" content types: another site's page cannot POST them without a CORS
# preflight, which this server never grants.
JSON_TYPES = ("application/json",)
AUDIO_TYPES = ("audio/wav", "audio/x-wav", "audio/wave", "application/octet-stream")
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


class DemoHandler(BaseHTTPRequestHandler):
    server: "DemoServer"
    server_version = "edgeseq-demo"
    timeout = 60  # seconds a socket read or write may block (a stalled upload)

    @property
    def demo(self) -> "Demo":
        return self.server.demo

    # -- routes ----------------------------------------------------------------------
    def do_GET(self) -> None:
        self._handle(self._get)

    def do_POST(self) -> None:
        self._handle(self._post)

    def _get(self, path: str, query: str) -> None:
        if path in STATIC:
            name, content_type = STATIC[path]
            self._send(200, (STATIC_DIR / name).read_bytes(), content_type,
                       {"Content-Security-Policy": PAGE_POLICY} if name.endswith(".html") else {})
        elif path == "/api/models":
            self.demo.catalog.refresh()
            self._json(200, {**self.demo.catalog.to_json(), **self.demo.config_json()})
        else:
            raise NotFound(f"nothing at {path}")

    def _post(self, path: str, query: str) -> None:
        if path == "/api/generate":
            self._generate()
        elif path == "/api/transcribe":
            job = parse_audio_job(parse_qs(query, keep_blank_values=True))
            wav = self._body(self.demo.limits.max_audio_bytes, AUDIO_TYPES)
            self._json(200, self.demo.transcribe(wav, job).to_json())
        else:
            raise NotFound(f"nothing to POST at {path}")

    def _generate(self) -> None:
        raw = self._body(self.demo.limits.max_json_bytes, JSON_TYPES)
        try:
            payload = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DemoRequestError(f"the request body is not valid JSON: {err}") from err
        events = self.demo.answer(parse_text_job(payload, self.demo.limits))
        # The first event comes before the 200: a bad input or option, or a budget below
        # the model's floor, is still answered with a status and a JSON message.
        first = next(events)
        self._send_head(200, "text/event-stream; charset=utf-8", {"X-Accel-Buffering": "no"})
        self._stream_events(first, events)

    # -- plumbing --------------------------------------------------------------------
    def _handle(self, route: Callable[[str, str], None]) -> None:
        url = urlsplit(self.path)
        try:
            self._check_host()
            route(url.path, url.query)
        except DemoRequestError as err:
            self._json(err.status, {"error": str(err)})
        except (EdgeseqError, AudioError) as err:  # bad input, options or audio
            self._json(400, {"error": str(err)})
        except (BrokenPipeError, ConnectionResetError):
            log.info("client %s went away", self.address_string())
        except Exception as err:  # a bug: logged with its traceback, reported to the page
            log.exception("internal error on %s %s", self.command, url.path)
            self._json(500, {"error": f"internal error ({type(err).__name__}: {err}); "
                                      "see the demo's log"})

    def _check_host(self) -> None:
        """On a loopback address, refuse other host names (DNS rebinding)."""
        host = urlsplit("//" + (self.headers.get("Host") or "")).hostname
        if self.server.is_loopback and host not in LOCAL_HOSTS:
            raise Forbidden(f"host {host!r} is not this machine; open {self.server.url}")

    def _body(self, limit: int, types: tuple[str, ...]) -> bytes:
        content_type = self.headers.get_content_type()
        if content_type not in types:
            raise UnsupportedMediaType(f"send the body as {types[0]}, not {content_type}")
        length = self.headers.get("Content-Length")
        if length is None:
            raise LengthRequired("the request needs a Content-Length")
        try:
            size = int(length)
        except ValueError:
            raise DemoRequestError(f"Content-Length {length!r} is not a number") from None
        if size > limit:  # refused unread; the connection closes after the answer
            raise BodyTooLarge(f"the request body is {size:,} bytes; this route takes at most "
                               f"{limit:,}")
        if size <= 0:
            raise DemoRequestError("the request body is empty")
        return self.rfile.read(size)

    def _stream_events(self, first: Event, events: Iterator[Event]) -> None:
        try:
            self._event(first)
            for event in events:
                self._event(event)
        except (BrokenPipeError, ConnectionResetError):
            log.info("client %s went away; decoding stopped", self.address_string())
        except (EdgeseqError, AudioError) as err:
            self._sse("error", {"error": str(err)})
        except Exception as err:
            log.exception("internal error while streaming")
            self._sse("error", {"error": f"internal error ({type(err).__name__}: {err})"})
        finally:
            events.close()  # stops decoding when the client left early

    def _event(self, event: Event) -> None:
        if isinstance(event, Piece):
            self._sse("piece", {"text": event.text})
        elif isinstance(event, Answer):
            self._sse("done", event.to_json())

    def _sse(self, name: str, data: dict) -> None:
        self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
        self.wfile.flush()

    def _send_head(self, status: int, content_type: str, extra: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        for key, value in extra.items():
            self.send_header(key, value)
        self.send_header("Connection", "close")
        self.end_headers()

    def _send(self, status: int, body: bytes, content_type: str,
              extra: dict[str, str] | None = None) -> None:
        self._send_head(status, content_type, {"Content-Length": str(len(body)), **(extra or {})})
        self.wfile.write(body)

    def _json(self, status: int, data: dict) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base's name)
        log.info("%s %s", self.address_string(), format % args)
