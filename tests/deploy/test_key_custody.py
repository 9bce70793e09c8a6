"""Keys stay with their owners: the organisations of a federation set up as the deployment guide says.

Each organisation's host folder is built with the real commands, on "its own machine" (its own
folder, its own audit log): the federation operator makes the CA on an offline workstation; the
coordinator organisation and two partner organisations each make their TLS key and a certificate
request (``loyalfed pki request``); only the request travels to the CA workstation and only the
certificate and ``ca.crt`` travel back (``loyalfed pki sign``); each partner's data officer makes
their signing key on their own computer (``loyalfed officer keygen``) and only ``officer.pub`` is
copied to the node host; each node makes its SuperNode key in its state volume on first start
(``ensure_node_keys``, what ``loyalfed node serve`` does first).

Then, per organisation, every file its containers can read is collected from its compose file as a
real Compose client resolves it (every bind, file or folder, and every named volume's contents),
plus everything on its host folder, and read byte for byte: none holds another organisation's
private key (TLS key, SuperNode key, officer signing key, audit-log signing key) or the CA key, and
every private key it holds is one of its own. Each organisation's containers do see their own TLS
key (so the walk is shown to reach key files).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from typer.testing import CliRunner

from loyalfed.cli.app import app
from participant_node.service.node_keys import ensure_node_keys
from tests.deploy.compose_config import Mount, mounts, resolve

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PARTNERS = ("careplus", "freshmart")
CA_HOLDER = "federation-ca"
COORDINATOR_ORG = "coordinator-org"
_RUNNER = CliRunner()


@dataclass
class Organisation:
    """One organisation: its host folder, its private keys, and the folders behind its named volumes.

    A named volume holds what the container writes itself (the node's SuperNode key, the
    coordinator's state); here each is the folder that organisation's own commands filled.
    """

    name: str
    host: Path
    private_keys: set[Path] = field(default_factory=set)
    volumes: dict[str, Path] = field(default_factory=dict)


def _loyalfed(org: Organisation, *args: str) -> dict[str, object]:
    """Run ``loyalfed … --json`` on ``org``'s machine (its own audit log), and return its report."""
    env = {"LOYALFED_AUDIT_LOG": str(org.host / "audit" / "cli-audit.sqlite")}
    result = _RUNNER.invoke(app, [*args, "--json"], env=env)
    assert result.exit_code == 0, result.output
    report = dict(json.loads(result.stdout))
    if "private_key" in report:
        org.private_keys.add(Path(str(report["private_key"])))
    return report


def _private_key_files(org: Organisation) -> set[Path]:
    """Everything on ``org``'s host that is a private key (PEM, OpenSSH or the audit log's own)."""
    return {p for p in org.host.rglob("*") if p.is_file() and _is_private(p)}


def _is_private(path: Path) -> bool:
    return b"PRIVATE KEY" in path.read_bytes() or path.suffix in {".key", ".secret"}


def _build(tmp_path: Path) -> dict[str, Organisation]:
    orgs = {n: Organisation(n, tmp_path / n) for n in (CA_HOLDER, COORDINATOR_ORG, *PARTNERS)}
    ca_host = orgs[CA_HOLDER]
    ca = _loyalfed(ca_host, "pki", "init-ca", "--out", str(ca_host.host / "ca"))
    ca_host.private_keys.add(Path(str(ca["ca_key"])))
    ca_crt = Path(str(ca["ca_certificate"]))

    coordinator = orgs[COORDINATOR_ORG]
    shutil.copytree(DEPLOY / COORDINATOR_ORG, coordinator.host)
    certs = coordinator.host / "certs"
    made = _loyalfed(coordinator, "pki", "request", "--role", "coordinator",
                     "--host", "coordinator.example.org", "--out", str(certs))  # fmt: skip
    _sign(ca_host, Path(str(made["request"])), certs / "coordinator.pem", "--role", "coordinator")
    shutil.copy(ca_crt, certs / "ca.crt")
    coordinator.volumes = {
        "coordinator-state": certs.parent / "state",
        "coordinator-store": certs.parent / "pg",
    }
    for folder in coordinator.volumes.values():
        folder.mkdir()

    for partner in PARTNERS:
        org = orgs[partner]
        shutil.copytree(DEPLOY / "partner-org", org.host)
        keys = org.host / "keys"
        made = _loyalfed(org, "pki", "request", "--role", "node", "--partner", partner,
                         "--host", f"node.{partner}.example", "--out", str(keys))  # fmt: skip
        org.private_keys.discard(Path(str(made["private_key"])))
        # The deployment guide: `mv keys/<partner>.key keys/node.key` (the compose file mounts that).
        Path(str(made["private_key"])).rename(keys / "node.key")
        org.private_keys.add(keys / "node.key")
        _sign(ca_host, Path(str(made["request"])), keys / "node.pem", "--role", "node", "--partner", partner)
        shutil.copy(ca_crt, keys / "ca.crt")
        # The officer's computer belongs to the partner organisation; only officer.pub reaches the node host.
        officer = _loyalfed(org, "officer", "keygen", "--out", str(org.host / "officer-laptop"))
        shutil.copy(Path(str(officer["public_key"])), keys / "officer.pub")
        state = org.host / "state"
        # With LOYALFED_NODE_TLS_KEY set (the compose file does), the node makes no TLS key of its own.
        node_keys = ensure_node_keys(
            state, partner=partner, hosts=[f"node.{partner}.example"], tls_key=keys / "node.key"
        )
        org.private_keys.add(node_keys.supernode_key)
        # The node's loopback and PSI secrets are its own too.
        org.private_keys |= {node_keys.local_secret, node_keys.matching_secret}
        (org.host / "data").mkdir()
        (org.host / "data" / "members.csv").write_text("member_id,joined_at\nm1,2024-01-01\n")
        org.volumes = {"node-state": state}
    for org in orgs.values():
        # The CLI's audit log signs with its own key on each machine: a private key of that organisation.
        org.private_keys |= {p for p in (org.host / "audit").glob("*") if _is_private(p)}
    return orgs


def _sign(ca_host: Organisation, request: Path, out: Path, *role: str) -> None:
    """The request travels to the CA workstation, is signed there, and the certificate travels back."""
    inbox = ca_host.host / "inbox" / request.name
    inbox.parent.mkdir(exist_ok=True)
    shutil.copy(request, inbox)
    signed = ca_host.host / "outbox" / f"{request.stem}.pem"
    signed.parent.mkdir(exist_ok=True)
    _loyalfed(
        ca_host, "pki", "sign", str(inbox), "--ca", str(ca_host.host / "ca"), *role, "--out", str(signed)
    )
    shutil.copy(signed, out)


def _container_files(org: Organisation, service_mounts: list[Mount]) -> Iterator[Path]:
    """Every file a container of ``org`` can read: its binds (files or folders) and named volumes."""
    for mount in service_mounts:
        source = Path(mount.source) if mount.is_bind else org.volumes[mount.source]
        assert not mount.is_bind or source.resolve().is_relative_to(org.host.resolve()), (
            f"{org.name}: {mount.source} is not on its own host"
        )
        yield from [source] if source.is_file() else (p for p in source.rglob("*") if p.is_file())


def _settings(org: Organisation) -> dict[str, str]:
    if org.name == COORDINATOR_ORG:
        return {}
    return {
        "LOYALFED_PARTNER_ID": org.name,
        "COMPOSE_PROJECT_NAME": f"loyalfed-{org.name}",
        "LOYALFED_PUBLIC_HOST": f"node.{org.name}.example",
        "LOYALFED_DATA_DIR": str(org.host / "data"),
        "LOYALFED_NODE_TOKEN": "node-token-from-the-federation-administrator",
    }


def test_no_organisation_can_read_another_organisations_private_key(tmp_path: Path) -> None:
    orgs = _build(tmp_path)
    for org in orgs.values():
        # Every private key on an organisation's machine was made there, by its own commands.
        assert _private_key_files(org) == org.private_keys, org.name
    owner = {key.read_bytes(): org.name for org in orgs.values() for key in org.private_keys}
    assert len(owner) == sum(len(o.private_keys) for o in orgs.values())  # distinct keys
    for name in (COORDINATOR_ORG, *PARTNERS):
        org = orgs[name]
        seen = {
            service: set(_container_files(org, service_mounts))
            for service, service_mounts in mounts(resolve(org.host, _settings(org))).items()
        }
        host_files = {p for p in org.host.rglob("*") if p.is_file()}
        for place, files in {**seen, "host": host_files}.items():
            for path in files:
                data = path.read_bytes()
                foreign = sorted({o for key, o in owner.items() if o != name and key in data})
                assert not foreign, f"{name} {place}: {path} holds a private key of {foreign}"
        # The walk does reach key files: each organisation's server sees its own keys.
        server = "coordinator" if name == COORDINATOR_ORG else "node"
        own = {"coordinator.key"} if name == COORDINATOR_ORG else {"node.key", "supernode"}
        assert own <= {p.name for p in seen[server]}, f"{name}: its own keys are not mounted"
