"""Refused requests, answered without echoing them: the validation-error face of an HTTP API.

FastAPI's default 422 repeats the whole offending input. A refused value may be the very member
identifier a check exists to keep out (DESIGN.md: never send raw request or exception text to
another organisation), and a value JSON cannot encode (NaN, Infinity) turns that 422 into a 500.
This handler answers with the location of each error and the rule it broke, never a value; a
location part that a client chose (a mapping key) is masked unless it is a plain snake_case name
that does not look like an identifier.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from audit.identifier_guard import identifier_problem

__all__ = ["install_validation_handler", "public_errors", "public_location"]

_FIELD = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
_MAX_ERRORS = 20


def public_location(loc: Sequence[int | str]) -> str:
    """``("body", "events", 0, "details", "+86 138…")`` -> ``"body.events.0.details.<key>"``."""
    parts = []
    for part in loc:
        if isinstance(part, int) or (_FIELD.match(part) and identifier_problem(part) is None):
            parts.append(str(part))
        else:
            parts.append("<key>")
    return ".".join(parts)


def public_errors(err: RequestValidationError) -> list[dict[str, str]]:
    """Each error's location and rule (pydantic's message and type), at most 20, no input values."""
    return [
        {"loc": public_location(e.get("loc", ())), "type": str(e.get("type", "")), "msg": _message(e)}
        for e in err.errors()[:_MAX_ERRORS]
    ]


def _message(error: object) -> str:
    message = str(error.get("msg", "")) if isinstance(error, dict) else ""
    # Our own validators never repeat a value; pydantic's messages name rules, not inputs. Belt and
    # braces: a message that looks like it carries an identifier is replaced by its error type.
    return message if identifier_problem(message) is None else "value refused"


async def _validation_error(request: Request, err: Exception) -> JSONResponse:
    errors = public_errors(err) if isinstance(err, RequestValidationError) else []
    return JSONResponse({"detail": "invalid request", "errors": errors}, status_code=422)


def install_validation_handler(app: FastAPI) -> None:
    """Answer every request that fails validation with a 422 that does not echo it."""
    app.add_exception_handler(RequestValidationError, _validation_error)
