"""A points node's configuration, parsed once at the edge into a frozen model (JSON file)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from participant_node.points.errors import PointsError

__all__ = ["PointsNodeSettings", "load_settings"]


class PointsNodeSettings(BaseModel):
    """Everything a node needs for points interchange.

    ``pki_dir`` is a federation certificates folder (``ca.crt``, ``partners/<id>.pem|.key``): the
    node serves and calls peers with its own certificate and signs its settlement statements with
    its key. ``matching_secret`` keys identifiers before PSI (the federation's secret, hex).
    ``fault_seed`` injects the seeded fault plan into this node's outgoing messages (tests and
    benchmarks only).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    partner_id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    database_url: str
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    agreements_dir: Path
    officer_keys: dict[str, str]
    peers: dict[str, str] = Field(default_factory=dict)
    pki_dir: Path
    partner_dir: Path | None = None
    id_column: Literal["phone", "email"] = "phone"
    default_region: str = "CN"
    matching_secret: str = Field(pattern=r"^[0-9a-f]{32,128}$")
    min_link_set_size: int = Field(default=100, ge=1)
    audit_log: Path | None = None
    coordinator_url: str | None = None
    resend_after_s: float = Field(default=1.0, gt=0)
    in_doubt_after_s: float = Field(default=5.0, ge=0)
    recovery_every_s: float = Field(default=2.0, gt=0)
    # How long to wait for a peer's answer. Generous: an answer that comes late is still useful,
    # while giving up early makes the pump resend work the peer is still doing (under load the
    # two would chase each other). A dead peer fails at once (connection refused or reset).
    peer_timeout_s: float = Field(default=30.0, gt=0)
    # How many batches of transfers may wait on the peer's answer at once; reservations still run
    # one batch at a time (caps are checked in order), only the waiting on the peer overlaps.
    transfers_in_flight: int = Field(default=2, ge=1, le=16)
    # The most transfers one batch (one reservation transaction, one message each way) may carry.
    # Larger batches spread a commit and a message over more transfers; a lost or faulted message
    # holds up more of them (the fault-injection test uses smaller batches for more messages).
    transfers_per_batch: int = Field(default=1_000, ge=1, le=10_000)
    fault_seed: int | None = None
    fault_rate: float = Field(default=0.04, ge=0, lt=0.16)  # per kind; six kinds in FaultPlan

    def write(self, path: Path) -> None:
        path.write_text(self.model_dump_json(indent=2), encoding="utf-8")


def load_settings(path: Path) -> PointsNodeSettings:
    try:
        return PointsNodeSettings.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except OSError as err:
        raise PointsError(f"{path}: cannot read the points node settings ({err.strerror})") from err
    except json.JSONDecodeError as err:
        raise PointsError(f"{path}: not JSON (line {err.lineno})") from err
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise PointsError(f"{path}: field {where}: {first['msg']}") from err
