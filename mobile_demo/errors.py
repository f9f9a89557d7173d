"""Errors the demo answers with an HTTP status; each message is shown to the user as is."""
from __future__ import annotations

from edgeseq.errors import EdgeseqError


class DemoRequestError(EdgeseqError):
    """A request the demo refuses; `status` is the HTTP status it is answered with."""
    status = 400


class NotFound(DemoRequestError):
    status = 404


class BodyTooLarge(DemoRequestError):
    status = 413


class UnsupportedMediaType(DemoRequestError):
    status = 415


class LengthRequired(DemoRequestError):
    status = 411


class Forbidden(DemoRequestError):
    status = 403


class ServiceBusy(DemoRequestError):
    status = 503
