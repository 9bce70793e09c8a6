"""Only approved code runs at a node: the node's own check of the Flower App a run brings.

A Flower run ships its code to every SuperNode as a FAB (a zip of the app folder; Flower names it by
the sha256 of its bytes). Flower 1.41's own check, ``flower-supernode --trusted-entities``, verifies
signatures the SuperLink fetched from Flower Hub with the app (``valid_license``): a FAB submitted
with ``flwr run`` from a folder carries none, so a SuperNode given trusted entities refuses every
self-built app, approved or not. The node therefore checks the hash itself, before the app's code
is unpacked, imported or run:

the SuperNode's SuperExec starts each ClientApp process by Flower's program name ``flwr-clientapp``;
the node puts its own launcher under that name first on the SuperNode's ``PATH``
(``write_launcher``). The launcher runs Flower's ``flwr-clientapp`` unchanged except for the step
that installs the FAB: it installs it only if the FAB's sha256 is one the node approved
(``LOYALFED_APPROVED_APPS``), and otherwise raises ``UnapprovedAppError``, which Flower's ClientApp
runtime turns into the error reply of the message (the ServerApp reads the reason: the hash and the
rule). An approved FAB's hash is left in the ClientApp process's environment
(``LOYALFED_RUNNING_APP``), where the node's ClientApp reads it and tells the node service, whose
gate checks it against the apps the job's signed policy names. A FAB is a deterministic zip (Flower
fixes every entry's date), so the coordinator's build of the same app folder has the same hash
everywhere.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from participant_node.errors import NodeError

__all__ = [
    "APPROVED_APPS_ENV",
    "CLIENTAPP_PROGRAM",
    "RUNNING_APP_ENV",
    "UnapprovedAppError",
    "app_hashes",
    "approved_from_environment",
    "check_app",
    "fab_hash",
    "launcher_environment",
    "main",
    "write_launcher",
]

APPROVED_APPS_ENV = "LOYALFED_APPROVED_APPS"  # comma-separated sha256 hex digests of approved FABs
RUNNING_APP_ENV = "LOYALFED_RUNNING_APP"  # the sha256 of the FAB this ClientApp process installed
CLIENTAPP_PROGRAM = "flwr-clientapp"  # flwr.supercore.constant.TASK_TYPE_TO_COMMAND[CLIENT_APP]
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class UnapprovedAppError(NodeError):
    """A run brought a Flower App this node did not approve; its code was not loaded."""


def fab_hash(content: bytes) -> str:
    """Flower's FAB hash: the sha256 hex digest of the FAB's bytes."""
    return hashlib.sha256(content).hexdigest()


def app_hashes(hashes: Iterable[str]) -> frozenset[str]:
    """Approved FAB hashes, normalised to lowercase; ``ValueError`` names one that is not a sha256."""
    found = frozenset(h.strip().lower() for h in hashes if h.strip())
    bad = sorted(h for h in found if not _SHA256.match(h))
    if bad:
        raise ValueError(f"an approved app is named by the sha256 of its FAB (64 hex digits), got {bad[0]!r}")
    return found


def check_app(content: bytes, approved: frozenset[str]) -> str:
    """The FAB's hash if this node approved it; else ``UnapprovedAppError`` naming hash and rule."""
    digest = fab_hash(content)
    if digest not in approved:
        raise UnapprovedAppError(
            f"refused: Flower App sha256 {digest} is not approved at this node; a node runs only the "
            f"apps whose FAB hash its operator approved ({len(approved)} approved), so this app's "
            "code was not loaded and no member data was read"
        )
    return digest


def approved_from_environment(environ: Mapping[str, str]) -> frozenset[str]:
    """The approved FAB hashes the launcher was started with (none: every app is refused)."""
    return app_hashes(environ.get(APPROVED_APPS_ENV, "").split(","))


def launcher_environment(
    environ: Mapping[str, str], *, launcher_dir: Path, approved: Iterable[str]
) -> dict[str, str]:
    """``environ`` for a SuperNode whose ClientApp processes start through the approving launcher."""
    hashes = sorted(app_hashes(approved))
    path = os.pathsep.join([str(launcher_dir), environ.get("PATH", "")])
    return {**environ, "PATH": path, APPROVED_APPS_ENV: ",".join(hashes)}


def write_launcher(launcher_dir: Path, *, python: Path | None = None) -> Path:
    """Write the ``flwr-clientapp`` launcher (this module under this interpreter) into ``launcher_dir``.

    The launcher asks the node's ClientApp zygote to run this module's ``main`` in a fresh fork
    (``participant_node.clientapp_zygote``), and runs it itself where no zygote answers. It starts
    without ``site`` (``python -S``: standard library only, a few milliseconds), so the package's
    folder is put on its path by hand.
    """
    launcher_dir.mkdir(parents=True, exist_ok=True)
    program = launcher_dir / CLIENTAPP_PROGRAM
    interpreter = python or Path(sys.executable)
    package_root = Path(__file__).resolve().parent.parent
    code = (
        f"import sys; sys.path.insert(0, {str(package_root)!r}); "
        "from participant_node.clientapp_zygote import client_main; client_main()"
    )
    program.write_text(f'#!/bin/sh\nexec "{interpreter}" -S -c "{code}" "$@"\n', encoding="utf-8")
    program.chmod(0o755)
    return program


def _approving(install: Callable[..., object], approved: frozenset[str]) -> Callable[..., object]:
    def install_if_approved(fab_file: bytes, *args: object, **kwargs: object) -> object:
        os.environ[RUNNING_APP_ENV] = check_app(fab_file, approved)
        return install(fab_file, *args, **kwargs)

    return install_if_approved


def _parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """``flwr-clientapp``'s arguments, parsed as Flower's own command parses them."""
    from flwr.common.args import add_args_flwr_app_common
    from flwr.supercore.constant import SUPERNODE_DEFAULT_CLIENT_ADDRESS

    parser = argparse.ArgumentParser(description="Run a Flower ClientApp (approved apps only)")
    parser.add_argument("--runtime-api-address", default=SUPERNODE_DEFAULT_CLIENT_ADDRESS, type=str)
    add_args_flwr_app_common(parser=parser)
    return parser.parse_args(argv)


def main() -> None:
    """``flwr-clientapp`` with the node's approval check in front of the FAB installation.

    The SuperNode starts one such process per message, so it imports only Flower's ClientApp
    runtime: Flower's own ``flwr.supernode.cli.flwr_clientapp`` sits in a package whose
    ``__init__`` also imports the whole SuperNode (its object store, SQLAlchemy, its CLI), about
    0.5 CPU seconds per message that this process never uses.
    """
    from flwr.common.args import try_obtain_flwr_app_token
    from flwr.supercore.tls import validate_and_resolve_root_certificates
    from flwr.supernode.runtime import run_clientapp as runtime

    approved = approved_from_environment(os.environ)
    install = getattr(runtime, "install_from_fab", None)
    if install is None:  # fail closed if Flower's runtime no longer installs FABs through this step
        raise SystemExit("flwr-clientapp launcher: this Flower version has no install_from_fab step")
    runtime.install_from_fab = _approving(install, approved)  # type: ignore[assignment]
    args = _parse_arguments()
    runtime.run_clientapp(
        runtime_api_address=args.runtime_api_address,
        token=try_obtain_flwr_app_token(args),
        insecure=args.insecure,
        certificates=validate_and_resolve_root_certificates(args.root_certificates, args.insecure),
        parent_pid=args.parent_pid,
        runtime_dependency_install=args.runtime_dependency_install,
    )


if __name__ == "__main__":
    # Run the imported module's main, so a refusal names participant_node.approved_apps.UnapprovedAppError.
    from participant_node.approved_apps import main as _main

    _main()
