"""The one table at the API edge: domain errors to HTTP status and a public message.

The body is always ``{"error": {"code", "message"}}``; messages come from the domain's typed errors
(which name resources and rules) or are fixed strings, and never echo the request body — a request
can carry what must not be repeated back (a statement, a token, member data by mistake).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from coordinator.platform.errors import (
    ConflictError,
    ForbiddenError,
    InvalidRequestError,
    NotAuthenticatedError,
    NotFoundError,
)
from coordinator.service import api_models
from policies.errors import PolicyError
from policies.signed_approval import ReplayedDecisionError, SignatureRejectedError

__all__ = ["ERROR_TABLE", "error_body", "install_error_table"]

_log = logging.getLogger("loyalfed.coordinator")
_KNOWN_NAMES = frozenset(
    {"body", "query", "path", "header"}
    | {
        name
        for model in vars(api_models).values()
        if isinstance(model, type) and issubclass(model, BaseModel)
        for name in model.model_fields
    }
)

# (error type, HTTP status, code); the first match wins, so subclasses come first.
ERROR_TABLE: tuple[tuple[type[Exception], int, str], ...] = (
    (NotAuthenticatedError, 401, "not_authenticated"),
    (ForbiddenError, 403, "forbidden"),
    (SignatureRejectedError, 403, "signature_rejected"),
    (NotFoundError, 404, "not_found"),
    (ConflictError, 409, "conflict"),
    (ReplayedDecisionError, 409, "replayed_decision"),
    (InvalidRequestError, 422, "invalid_request"),
    (PolicyError, 422, "invalid_policy"),
)


def error_body(status: int, code: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


async def _domain_error(_request: Request, err: Exception) -> JSONResponse:
    for error_type, status, code in ERROR_TABLE:
        if isinstance(err, error_type):
            return error_body(status, code, str(err))
    _log.exception("unexpected error")  # process boundary: logged here, a fixed message sent
    return error_body(500, "internal", "internal error")


def _location(error: Mapping[str, Any]) -> str:
    """Where a validation error is, without caller-chosen names: an unknown field or a mapping key
    is body content, so it shows as ``<field>``; pydantic's ``input`` (the value) is never used."""
    loc: Sequence[int | str] = error.get("loc", ())
    parts = [str(p) if isinstance(p, int) or str(p) in _KNOWN_NAMES else "<field>" for p in loc]
    return ".".join(parts)


async def _validation_error(_request: Request, err: Exception) -> JSONResponse:
    errors = err.errors() if isinstance(err, RequestValidationError) else []
    where = "; ".join(f"{_location(e)}: {e['msg']}" for e in errors[:5])
    return error_body(422, "invalid_request", f"invalid request ({where})")


async def _http_error(_request: Request, err: Exception) -> JSONResponse:
    status = err.status_code if isinstance(err, StarletteHTTPException) else 500
    return error_body(status, "http_error", "not found" if status == 404 else "request refused")


def install_error_table(app: FastAPI) -> None:
    for error_type, _status, _code in ERROR_TABLE:
        app.add_exception_handler(error_type, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _domain_error)
