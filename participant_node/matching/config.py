"""Configuration of a node's PSI service, parsed once at the edge into a frozen model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from participant_node.matching.peer_identity import PeerAuthentication
from policies.purpose import Purpose

__all__ = ["MATCHING_PURPOSES", "MatchingConfig"]

# PIPL Art. 23 / GDPR Art. 6(1)(a): only consents for these purposes let a member enter a PSI set.
MATCHING_PURPOSES = frozenset({Purpose.CROSS_BRAND_MATCHING, Purpose.POINTS_INTERCHANGE})


class MatchingConfig(BaseModel):
    """What a node accepts from peers and what it uses to build its sets.

    The probing guards bound what a curious peer can learn by repeating runs with crafted sets:
    a tiny set tests individual members, frequent runs and mostly-new sets test many candidates
    (differencing attacks; see e.g. Guo et al., "Birds of a Feather Flock Together: How Set Bias
    Helps to Deanonymize You via Revealed Intersection Sizes", USENIX Security 2022).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    partner_id: str = Field(min_length=1)
    id_column: str = "phone"
    default_region: str = "US"
    min_set_size: int = Field(default=100, ge=1)
    max_set_size: int = Field(default=20_000_000, ge=1)
    max_runs_per_pair_per_day: int = Field(default=4, ge=1)
    max_new_fraction: float = Field(default=0.5, gt=0.0, le=1.0)
    session_timeout_s: float = Field(default=300.0, gt=0.0)
    chunk_size: int = Field(default=32_768, ge=1, le=1_048_576)
    paillier_bits: int = Field(default=2048, ge=1024)
    # Partners this node answers (None: any peer whose client certificate the TLS layer accepted).
    allowed_peers: frozenset[str] | None = None
    # Where the peer's partner id comes from (peer_identity.PeerAuthentication): by default only a
    # verified mTLS client certificate, so a node answers nobody over plain HTTP (the demo runs mTLS
    # on loopback too). "certificate_or_loopback" is an explicit opt-in for local development.
    peer_authentication: PeerAuthentication = PeerAuthentication.CERTIFICATE
