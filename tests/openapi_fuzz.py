"""Schemathesis over a whole FastAPI app, in-process, with a bounded number of examples.

Each operation of the app's OpenAPI gets ``max_examples`` positive (schema-valid) and as many
negative (schema-violating) generated requests, sent once per credential in ``headers``. Returns
what was sent and what came back, so a test can assert on it (no 500, no echoed body…).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.python import asgi

__all__ = ["FuzzReport", "fuzz_app"]


@dataclass
class FuzzReport:
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)


def fuzz_app(
    app: FastAPI,
    *,
    headers: Sequence[Mapping[str, str]],
    max_examples: int,
    check: Callable[[schemathesis.Case, object], None] | None = None,
    asgi_app: Callable[..., Awaitable[None]] | None = None,
) -> FuzzReport:
    """Fuzz every operation of ``app``; ``check(case, response)`` may assert more per response.

    ``asgi_app`` (default ``app``) receives the requests: e.g. ``app`` behind the ASGI TLS scope
    extension a verified mTLS connection would add.
    """
    report = FuzzReport()
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    with asgi.get_client(
        asgi_app or app
    ) as client:  # one in-process client (lifespan once), not one per request
        for operation in [result.ok() for result in schema.get_all_operations()]:
            _fuzz_operation(operation, client, headers, max_examples, check, report)
    return report


def _fuzz_operation(
    operation: schemathesis.APIOperation,
    client: asgi.ASGIClient,
    headers: Sequence[Mapping[str, str]],
    max_examples: int,
    check: Callable[[schemathesis.Case, object], None] | None,
    report: FuzzReport,
) -> None:
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=max_examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: schemathesis.Case) -> None:
            for extra in headers:
                response = case.call(session=client, headers=dict(extra))
                report.requests += 1
                report.statuses[response.status_code] += 1
                if response.status_code >= 500:
                    report.server_errors.append(
                        f"{case.method} {case.formatted_path} -> {response.status_code}"
                    )
                if check is not None:
                    check(case, response)

        try:
            run()
        except Unsatisfiable:
            # Negative mode on an operation with nothing to violate (no parameters, no body).
            if mode is GenerationMode.POSITIVE:
                raise
