"""Client-facing errors in Lago's shape: ``{"status", "error", "code", "error_details"}``.

Handlers raise these; the error middleware turns each into its JSON response. Anything
else that escapes a handler is a bug, logged and answered as a 500 in the same shape.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

ErrorDetails = dict[str, Any]


class ApiError(Exception):
    """Root of the errors a client can cause or must retry; never a server bug."""

    status = 500
    error = "Internal Server Error"
    code = "internal_error"

    def __init__(self, error_details: ErrorDetails | None = None, *, code: str | None = None):
        super().__init__(code or self.code)
        self.error_details: ErrorDetails = error_details or {}
        if code is not None:
            self.code = code

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
    error = "Bad Request"
    code = "bad_request"


class Unauthorized(ApiError):
    """No API key, or one no organization owns: send `Authorization: Bearer <key>`."""

    status = 401
    error = "Unauthorized"
    code = "unauthorized"


class NotFound(ApiError):
    """The object named in the path (or in the body) does not exist in this organization."""

    status = 404
    error = "Not Found"

    def __init__(self, resource: str):
        super().__init__(code=f"{resource}_not_found")


class RouteNotFound(ApiError):
    status = 404
    error = "Not Found"
    code = "route_not_found"


class MethodNotAllowed(ApiError):
    status = 405
    error = "Method Not Allowed"
    code = "method_not_allowed"


class NotAllowed(ApiError):
    """The object is not in a state that allows this action (say, voiding a draft)."""

    status = 405
    error = "Method Not Allowed"
    code = "not_allowed"


class PayloadTooLarge(ApiError):
    status = 413
    error = "Payload Too Large"
    code = "payload_too_large"


class ValidationFailed(ApiError):
    """Fields with wrong types, unknown fields or values: `error_details` names each one."""

    status = 422
    error = "Unprocessable Entity"
    code = "validation_errors"


class BrokerUnavailable(ApiError):
    """Kafka did not acknowledge in time: nothing was accepted, retry the same request."""

    status = 503
    error = "Service Unavailable"
    code = "broker_unavailable"


class DatabaseUnavailable(ApiError):
    """Postgres did not answer: nothing was written, retry the same request."""

    status = 503
    error = "Service Unavailable"
    code = "database_unavailable"


class AggregatorUnavailable(ApiError):
    """No aggregator answered for the subscription (not started, restarting, recovering, or
    the subscription not yet in its catalog): retry shortly."""

    status = 503
    error = "Service Unavailable"
    code = "aggregator_unavailable"


def error_response(body: dict[str, Any], status: int) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def internal_error() -> web.Response:
    return ApiError().response()
