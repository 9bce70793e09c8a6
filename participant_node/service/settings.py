"""The node service's settings, parsed once at the edge (flags or environment) into a frozen model."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from participant_node.approved_apps import app_hashes

__all__ = ["NodeSettings"]


class NodeSettings(BaseSettings):
    """Everything ``loyalfed node serve`` needs; ``LOYALFED_NODE_*`` environment variables work too.

    Parameters
    ----------
    partner_dir
        The partner's data folder (members, transactions, consents).
    coordinator_url
        The coordinator's base URL (``https://…``; plain ``http`` only on loopback).
    officer_public_keys
        The partner's own data officers' Ed25519 public keys, configured locally: the node never takes
        an officer key from the coordinator.
    state_dir
        Node state (keys, accountant, audit log); default ``PARTNER_DIR/.loyalfed``.
    token
        The node's bearer token for the coordinator (role ``node`` of this partner's organisation).
    yearly_epsilon_cap
        The node's own yearly ε cap per dataset, enforced whatever the coordinator's ledger says.
    points_settings
        The points interchange node's settings file (``participant_node.points.node_settings``);
        when given, the node serves ``/points/v1`` on its mTLS API.
    approved_apps
        The sha256 hashes of the Flower Apps (FABs) this node runs; a run of any other app is refused
        before its code is loaded (``participant_node.approved_apps``).
    tls_key, public_host
        An operator-made TLS key (else the node makes its own), and the host name other nodes use
        when the API listens on a wildcard address.
    """

    model_config = SettingsConfigDict(env_prefix="LOYALFED_NODE_", frozen=True, extra="forbid")

    partner_dir: Path
    coordinator_url: str = Field(pattern=r"^https?://[^\s/]+(/.*)?$")
    officer_public_keys: tuple[Path, ...] = Field(min_length=1)
    partner_id: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    host: str = "127.0.0.1"
    port: int = Field(default=8800, ge=0, le=65535)
    state_dir: Path | None = None
    token: SecretStr | None = None
    coordinator_ca: Path | None = None
    tls_certificate: Path | None = None
    tls_key: Path | None = None
    public_host: str | None = None
    federation_ca: Path | None = None
    region: str = "CN"
    yearly_epsilon_cap: float = Field(default=10.0, gt=0.0)
    heartbeat_interval_s: float = Field(default=10.0, gt=0.0)
    points_settings: Path | None = None
    audit_url: str | None = None
    audit_public_key: Path | None = None
    approved_apps: tuple[str, ...] = ()

    @field_validator("approved_apps")
    @classmethod
    def _fab_hashes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(app_hashes(value)))

    @field_validator("partner_dir")
    @classmethod
    def _existing_folder(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"{value}: no such partner folder")
        return value.resolve()

    @property
    def partner(self) -> str:
        """The partner id: as configured, else the partner folder's name."""
        return self.partner_id or self.partner_dir.name

    @property
    def advertised_host(self) -> str:
        """The host other nodes reach this node's API at (its certificate names it)."""
        return self.public_host or self.host

    @property
    def state(self) -> Path:
        return (self.state_dir or self.partner_dir / ".loyalfed").resolve()

    @property
    def token_value(self) -> str | None:
        return self.token.get_secret_value() if self.token is not None else None
