"""A federation folder: one subfolder per partner, described by an optional ``federation.toml``.

```toml
[[partners]]
id = "freshmart-north"
name = "FreshMart North"
kind = "store_group"   # or "brand"
region = "CN"
```

Without ``federation.toml`` every subfolder is a store-group partner in region "default".
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from audit.audit_settings import AuditSettings
from participant_node.data.contract import FileKind
from participant_node.data.errors import DataContractError
from participant_node.data.table_reader import find_file

__all__ = ["FEDERATION_FILE", "Federation", "Partner", "PartnerKind", "is_partner_folder", "load_federation"]

FEDERATION_FILE = "federation.toml"
DEFAULT_REGION = "default"


class PartnerKind(StrEnum):
    STORE_GROUP = "store_group"
    BRAND = "brand"


@dataclass(frozen=True)
class Partner:
    partner_id: str
    name: str
    kind: PartnerKind
    region: str
    path: Path


@dataclass(frozen=True)
class Federation:
    path: Path
    partners: tuple[Partner, ...]
    audit: AuditSettings | None = None  # the [audit] table: the log's pinned key, service URL

    @property
    def partner_ids(self) -> tuple[str, ...]:
        return tuple(p.partner_id for p in self.partners)

    def partner(self, partner_id: str) -> Partner:
        for partner in self.partners:
            if partner.partner_id == partner_id:
                return partner
        raise KeyError(f"no partner {partner_id!r} in {self.path}; partners: {', '.join(self.partner_ids)}")


class _PartnerEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    name: str = ""
    kind: PartnerKind = PartnerKind.STORE_GROUP
    region: str = DEFAULT_REGION


class _FederationFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    partners: list[_PartnerEntry] = Field(min_length=1)
    audit: AuditSettings | None = None


def is_partner_folder(path: Path) -> bool:
    """True when ``path`` holds a members file (it is one partner, not a federation)."""
    return path.is_dir() and find_file(path, FileKind.MEMBERS) is not None


def load_federation(path: Path | str) -> Federation:
    """Read the federation folder ``path``; partner folders are listed, not loaded."""
    folder = Path(path)
    if not folder.is_dir():
        raise DataContractError("not a federation folder (no such directory)", file=str(folder))
    manifest = folder / FEDERATION_FILE
    partners = _from_manifest(manifest) if manifest.is_file() else _from_subfolders(folder)
    for partner in partners:
        if not partner.path.is_dir():
            raise DataContractError(
                f"partner '{partner.partner_id}' has no folder {partner.path.name}/", file=FEDERATION_FILE
            )
    return Federation(folder, tuple(partners), _audit_settings(manifest))


def _audit_settings(manifest: Path) -> AuditSettings | None:
    """The ``[audit]`` table (already validated with the partners by ``_from_manifest``)."""
    if not manifest.is_file():
        return None
    return _FederationFile.model_validate(tomllib.loads(manifest.read_text(encoding="utf-8"))).audit


def _from_manifest(manifest: Path) -> list[Partner]:
    try:
        parsed = _FederationFile.model_validate(tomllib.loads(manifest.read_text(encoding="utf-8")))
    except tomllib.TOMLDecodeError as err:
        raise DataContractError(f"not valid TOML: {err}", file=FEDERATION_FILE) from err
    except UnicodeDecodeError as err:
        raise DataContractError("not valid UTF-8", file=FEDERATION_FILE) from err
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise DataContractError(f"{first['msg']}", file=FEDERATION_FILE, row=where) from err
    ids = [p.id for p in parsed.partners]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise DataContractError(f"duplicate partner id(s): {', '.join(duplicates)}", file=FEDERATION_FILE)
    return [Partner(p.id, p.name or p.id, p.kind, p.region, manifest.parent / p.id) for p in parsed.partners]


def _from_subfolders(folder: Path) -> list[Partner]:
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subfolders:
        raise DataContractError("no partner folders and no federation.toml", file=str(folder))
    return [Partner(p.name, p.name, PartnerKind.STORE_GROUP, DEFAULT_REGION, p) for p in subfolders]
