"""Client-facing errors in Lago's shape: ``{"status", "error", "code", "error_details"}``.

Handlers raise these; the error middleware turns each into its JSON response. Anything
else that escapes a handler is a bug, logged and answered as a 500 in the same shape.
Each error names its status and code where it is declared (`class X(ApiError, status=...,
code=...)`); the `error` text is the status's reason phrase as Lago sends it.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

ErrorDetails = dict[str, Any]

# The reason phrase Lago sends in `error` for each status it answers with.
_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class ApiError(Exception):
    """Root of the errors a client can cause or must retry; never a server bug."""

    status: int = 500
    code: str = "internal_error"

    def __init_subclass__(cls, *, status: int | None = None, code: str | None = None) -> None:
        super().__init_subclass__()
        if status is not None:
            cls.status = status
        if code is not None:
            cls.code = code

    def __init__(self, error_details: ErrorDetails | None = None, *, code: str | None = None):
        super().__init__(code or self.code)
        self.error_details: ErrorDetails = error_details or {}
        if code is not None:
            self.code = code

    @property
    def error(self) -> str:
        return _REASONS[self.status]

    def body(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "error": self.error,
            "code": self.code,
            "error_details": self.error_details,
        }

    def response(self) -> web.Response:
        return error_response(self.body(), self.status)


class BadRequest(ApiError, status=400, code="bad_request"):
    """The body is not JSON, or not the object the endpoint wraps its input in."""


class Unauthorized(ApiError, status=401, code="unauthorized"):
    """No API key, or one no organization owns: send `Authorization: Bearer <key>`."""


class NotFound(ApiError, status=404):
    """The object named in the path (or in the body) does not exist in this organization."""

    def __init__(self, resource: str):
        super().__init__(code=f"{resource}_not_found")


class RouteNotFound(ApiError, status=404, code="route_not_found"):
    """No route has this path."""


class MethodNotAllowed(ApiError, status=405, code="method_not_allowed"):
    """The path exists, not with this method."""


class NotAllowed(ApiError, status=405, code="not_allowed"):
    """The object is not in a state that allows this action (say, voiding a draft)."""


class PayloadTooLarge(ApiError, status=413, code="payload_too_large"):
    """The body is over the size the API accepts (METERFLOW_INGEST_MAX_BODY_BYTES)."""


class ValidationFailed(ApiError, status=422, code="validation_errors"):
    """Fields with wrong types, unknown fields or values: `error_details` names each one."""


class BrokerUnavailable(ApiError, status=503, code="broker_unavailable"):
    """Kafka did not acknowledge in time: nothing was accepted, retry the same request."""


class DatabaseUnavailable(ApiError, status=503, code="database_unavailable"):
    """Postgres did not answer: nothing was written, retry the same request."""


class AggregatorUnavailable(ApiError, status=503, code="aggregator_unavailable"):
    """No aggregator answered for the subscription (not started, restarting, recovering, or
    the subscription not yet in its catalog): retry shortly."""


def error_response(body: dict[str, Any], status: int) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def internal_error() -> web.Response:
    return ApiError().response()
