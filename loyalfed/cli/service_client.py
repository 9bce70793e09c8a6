"""The CLI as a client of the coordinator service: one settings object, one HTTP client, clear errors.

Where the service is and who is calling come from one pydantic-settings object, by precedence:
command-line flags, then the environment (``LOYALFED_URL``, ``LOYALFED_TOKEN``, ``LOYALFED_CA_CERT``),
then a config file (``--config`` or ``LOYALFED_CONFIG``, default ``~/.config/loyalfed/client.toml``,
keys ``url``, ``token``, ``token_file``, ``ca_cert``). Failures are one line: the service cannot be
reached, the credential was refused (401), or the action was refused (403), with the service's
public message.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "ClientOptions",
    "ClientSettings",
    "JsonOption",
    "ServiceClient",
    "ServiceClientError",
    "connect",
]

DEFAULT_CONFIG = Path("~/.config/loyalfed/client.toml")
API = "/api/v1"


class ServiceClientError(Exception):
    """A call to the coordinator failed; the message is one line and safe to print."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ClientSettings(BaseSettings):
    """Where the coordinator is, the bearer token, and the CA certificate that verifies it."""

    model_config = SettingsConfigDict(env_prefix="LOYALFED_", extra="ignore", frozen=True)

    url: str = Field(default="http://127.0.0.1:8700", pattern=r"^https?://")
    token: SecretStr | None = None
    token_file: Path | None = None
    ca_cert: Path | None = None

    def bearer(self) -> str | None:
        if self.token is not None:
            return self.token.get_secret_value()
        if self.token_file is not None:
            try:
                return self.token_file.expanduser().read_text(encoding="utf-8").strip()
            except OSError as err:
                raise ServiceClientError(
                    f"cannot read the token file {self.token_file}: {err.strerror}"
                ) from err
        return None


def _config_file(path: Path | None) -> dict[str, Any]:
    chosen = path or Path(os.environ.get("LOYALFED_CONFIG", str(DEFAULT_CONFIG)))
    chosen = chosen.expanduser()
    if not chosen.exists():
        if path is not None:
            raise ServiceClientError(f"config file {chosen} does not exist")
        return {}
    try:
        data = tomllib.loads(chosen.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ServiceClientError(f"config file {chosen} is not readable TOML: {err}") from err
    return {k: v for k, v in data.items() if k in {"url", "token", "token_file", "ca_cert"}}


def load_settings(
    *, url: str | None, token: str | None, ca_cert: Path | None, config: Path | None
) -> ClientSettings:
    """Flags over environment over config file (pydantic-settings: init values win over env)."""
    file_values = _config_file(config)
    flags = {k: v for k, v in {"url": url, "token": token, "ca_cert": ca_cert}.items() if v is not None}
    env_names = {
        "url": "LOYALFED_URL",
        "token": "LOYALFED_TOKEN",
        "ca_cert": "LOYALFED_CA_CERT",
        "token_file": "LOYALFED_TOKEN_FILE",
    }
    from_file = {k: v for k, v in file_values.items() if env_names[k] not in os.environ}
    try:
        return ClientSettings(**(from_file | flags))
    except ValidationError as err:
        first = err.errors()[0]
        raise ServiceClientError(
            f"client settings: {'.'.join(map(str, first['loc']))}: {first['msg']}"
        ) from None


class ServiceClient:
    """JSON calls to ``/api/v1`` with the caller's token; errors become ``ServiceClientError``."""

    def __init__(self, settings: ClientSettings, *, timeout: float = 30.0) -> None:
        token = settings.bearer()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        verify: str | bool = str(settings.ca_cert.expanduser()) if settings.ca_cert else True
        self.url = settings.url.rstrip("/")
        self._http = httpx.Client(base_url=self.url + API, headers=headers, verify=verify, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as err:
            raise ServiceClientError(
                f"cannot reach the coordinator at {self.url} ({type(err).__name__}); "
                "check --url / LOYALFED_URL"
            ) from err
        if response.status_code >= 400:
            raise ServiceClientError(_refusal(method, path, response), status=response.status_code)
        return response

    def get(self, path: str, **params: Any) -> Any:
        return _json(self.request("GET", path, params={k: v for k, v in params.items() if v is not None}))

    def post(self, path: str, body: Any = None) -> Any:
        return _json(self.request("POST", path, json=body if body is not None else {}))

    def put(self, path: str, body: Any) -> Any:
        return _json(self.request("PUT", path, json=body))


def _json(response: httpx.Response) -> Any:
    return response.json() if response.content else None


def _refusal(method: str, path: str, response: httpx.Response) -> str:
    try:
        error = response.json().get("error", {})
        message = str(error.get("message", ""))[:300] if isinstance(error, dict) else ""
    except (ValueError, AttributeError):
        message = ""
    if response.status_code == 401:
        reason = message or "the token is not valid"
        return f"credential refused by the coordinator (401): {reason}; check --token / LOYALFED_TOKEN"
    if response.status_code == 403:
        return f"action refused by the coordinator (403): {message or 'forbidden'}"
    return f"{method} {path} failed ({response.status_code}): {message or response.reason_phrase}"


UrlOption = Annotated[str | None, typer.Option("--url", help="Coordinator URL (LOYALFED_URL)")]
TokenOption = Annotated[str | None, typer.Option("--token", help="Bearer token (LOYALFED_TOKEN)")]
CaOption = Annotated[
    Path | None, typer.Option("--ca-cert", help="CA certificate of the coordinator (LOYALFED_CA_CERT)")
]
ConfigOption = Annotated[Path | None, typer.Option("--config", help="Client config file (TOML)")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print only JSON to stdout.")]


class ClientOptions:
    """The connection flags every service command takes, gathered once."""

    def __init__(self, url: str | None, token: str | None, ca_cert: Path | None, config: Path | None) -> None:
        self.url, self.token, self.ca_cert, self.config = url, token, ca_cert, config


@contextmanager
def connect(options: ClientOptions) -> Iterator[ServiceClient]:
    settings = load_settings(
        url=options.url, token=options.token, ca_cert=options.ca_cert, config=options.config
    )
    client = ServiceClient(settings)
    try:
        yield client
    finally:
        client.close()
