"""Map the packages' exception roots to exit codes and operator-facing messages."""

from __future__ import annotations

import click

from audit.errors import AuditError
from coordinator.errors import CoordinatorError
from loyalfed.cli.service_client import ServiceClientError
from models.errors import ModelError
from participant_node.errors import NodeError
from policies.errors import PolicyError
from protocol.errors import ProtocolError
from psi.errors import PsiError

# Typed errors are expected failures (bad input, refused job): exit 2. Anything else is a bug:
# exit 1 with the exception type named, still without a traceback for the operator.
_TYPED_ERRORS: tuple[type[Exception], ...] = (
    AuditError,
    CoordinatorError,
    ModelError,
    NodeError,
    PolicyError,
    ProtocolError,
    PsiError,
    ServiceClientError,
)


def exit_code_for(err: BaseException) -> int:
    if isinstance(err, click.exceptions.ClickException):
        return err.exit_code
    if isinstance(err, click.exceptions.Abort):
        return 130
    if isinstance(err, (*_TYPED_ERRORS, FileNotFoundError, PermissionError, ValueError)):
        return 2
    return 1


def public_message(err: BaseException) -> str:
    if isinstance(err, click.exceptions.ClickException):
        return err.format_message()
    if isinstance(err, (*_TYPED_ERRORS, ValueError)):
        return str(err)
    if isinstance(err, FileNotFoundError | PermissionError):
        return f"{err.strerror}: {err.filename}"
    return f"unexpected {type(err).__name__}: {err} (please report this)"
