"""The coordinator service's settings: one pydantic-settings class, read once at start-up.

Flags of ``loyalfed coordinator serve`` override environment variables ``LOYALFED_COORDINATOR_*``.
No secret has a default: the administrator's token is generated at the first start, and a
bootstrap token given through the environment is refused when it is short or a well-known value.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["CoordinatorSettings"]

_KNOWN_DEFAULTS = frozenset({"changethis", "changeme", "admin", "secret", "password", "token", "test"})


class CoordinatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOYALFED_COORDINATOR_", extra="forbid", frozen=True)

    state_dir: Path
    host: str = "127.0.0.1"
    port: int = Field(default=8700, ge=0, le=65535)
    database_url: SecretStr | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # The CA certificate that verifies the API's TLS certificate; handed to each job's ServerApp.
    tls_ca: Path | None = None
    # ca.crt, server.pem, server.key for the SuperLink (the layout ``loyalfed pki`` writes);
    # default DIR/superlink-tls, created under a local CA at the first start when absent.
    superlink_certs: Path | None = None
    flower_app: Path | None = None
    superlink: bool = True
    superlink_port: int = Field(default=0, ge=0, le=65535)
    public_url: str | None = None
    bootstrap_admin_token: SecretStr | None = None

    @field_validator("bootstrap_admin_token")
    @classmethod
    def _no_default_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            secret = value.get_secret_value()
            if secret.lower() in _KNOWN_DEFAULTS or len(secret) < 32:
                raise ValueError("bootstrap_admin_token must be a random value of at least 32 characters")
        return value

    @model_validator(mode="after")
    def _tls_or_loopback(self) -> CoordinatorSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("give both --tls-cert and --tls-key, or neither")
        if self.tls_cert is None and not _is_loopback(self.host):
            raise ValueError(
                f"without --tls-cert/--tls-key the API listens on loopback only, not {self.host}"
            )
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def store_url(self) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{self.state_dir / 'coordinator.sqlite'}"

    def base_url(self, port: int) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"{'https' if self.tls else 'http'}://{self.host}:{port}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
