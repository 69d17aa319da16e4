"""Client-facing errors in Lago's shape: ``{"status", "error", "code", "error_details"}``.

Handlers raise these; the error middleware turns each into its JSON response. Anything
else that escapes a handler is a bug, logged and answered as a 500 in the same shape.
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

    status = 500
    code = "internal_error"

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


class BadRequest(ApiError):
    """The body is not JSON, or not the object the endpoint wraps its input in."""

    status = 400
    code = "bad_request"


class Unauthorized(ApiError):
    """No API key, or one no organization owns: send `Authorization: Bearer <key>`."""

    status = 401
    code = "unauthorized"


class NotFound(ApiError):
    """The object named in the path (or in the body) does not exist in this organization."""

    status = 404

    def __init__(self, resource: str):
        super().__init__(code=f"{resource}_not_found")


class RouteNotFound(ApiError):
    status = 404
    code = "route_not_found"


class MethodNotAllowed(ApiError):
    status = 405
    code = "method_not_allowed"


class NotAllowed(ApiError):
    """The object is not in a state that allows this action (say, voiding a draft)."""

    status = 405
    code = "not_allowed"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class ValidationFailed(ApiError):
    """Fields with wrong types, unknown fields or values: `error_details` names each one."""

    status = 422
    code = "validation_errors"


class BrokerUnavailable(ApiError):
    """Kafka did not acknowledge in time: nothing was accepted, retry the same request."""

    status = 503
    code = "broker_unavailable"


class DatabaseUnavailable(ApiError):
    """Postgres did not answer: nothing was written, retry the same request."""

    status = 503
    code = "database_unavailable"


class AggregatorUnavailable(ApiError):
    """No aggregator answered for the subscription (not started, restarting, recovering, or
    the subscription not yet in its catalog): retry shortly."""

    status = 503
    code = "aggregator_unavailable"


def error_response(body: dict[str, Any], status: int) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def internal_error() -> web.Response:
    return ApiError().response()
