"""The SuperLink's Control API, called from the coordinator's own process.

The requests ``flwr run``, ``flwr stop``, ``flwr ls`` and ``flwr supernode register|ls|unregister``
send, sent
through Flower's ``ControlHttpClient`` (the client those commands build) verified against the
SuperLink's root certificate. Each ``flwr`` process costs 1.5–3 CPU seconds of imports and
start-up before its one request, and the job runner and node registration ran one per call; here
a call costs milliseconds. The requests are the CLI's own (``flwr/cli/run/run.py``,
``flwr/cli/stop.py``, ``flwr/cli/ls.py``, ``flwr/cli/supernode/`` in flwr 1.41): the
coordinator-service tests submit, stop, register and retire through them, and the deployment-engine test
checks the status read against ``flwr ls``."""

from __future__ import annotations

import hashlib
import logging
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from coordinator.errors import SuperLinkError

__all__ = [
    "control_client",
    "one_call_client",
    "register_node",
    "run_status",
    "start_run",
    "stop_run",
    "unregister_node",
]

_log = logging.getLogger("loyalfed.coordinator.runs")


def control_client(address: str, root_certificate: Path) -> Any:
    """Flower's HTTPS client of a SuperLink's Control API, verified against ``root_certificate``."""
    from flwr.supercore.control.control_http_client import ControlHttpClient
    from flwr.supercore.interceptors.http.runtime_version import RuntimeVersionHttpInterceptor

    return ControlHttpClient.from_server_address(
        server_address=address,
        insecure=False,
        root_certificates=str(root_certificate.resolve()),
        interceptors=[RuntimeVersionHttpInterceptor(component_name="flwr CLI")],
    )


@contextmanager
def one_call_client(address: str, root_certificate: Path) -> Iterator[Any]:
    """A client on a new connection, closed after the call: for the calls that change the
    SuperLink (start, stop, register), which must not meet a kept connection the SuperLink closed
    when it restarted: they are not retried, since a run submitted twice would run twice."""
    client = control_client(address, root_certificate)
    try:
        yield client
    finally:
        client.close()


def _refusal(err: httpx.HTTPStatusError) -> str:
    """Flower's own message for a refused Control API call, else the HTTP status."""
    from flwr.supercore.error.base import FlowerError

    flower_error = FlowerError.from_json(err.response.text)
    if flower_error is not None:
        return f"[code {flower_error.code}] {flower_error.message}"
    return f"HTTP {err.response.status_code}"


def _already_registered(err: httpx.HTTPStatusError) -> bool:
    from flwr.supercore.error.base import ApiErrorCode, FlowerError

    flower_error = FlowerError.from_json(err.response.text)
    return flower_error is not None and flower_error.code == ApiErrorCode.PUBLIC_KEY_ALREADY_IN_USE


def start_run(client: Any, app_dir: Path, run_config_toml: str) -> str:
    """Submit a run of the Flower app in ``app_dir`` with ``run_config_toml`` as its run config
    (what ``flwr run APP_DIR CONNECTION --run-config FILE`` sends); returns Flower's run id."""
    from flwr.cli.build import build_fab_from_disk
    from flwr.common.config import flatten_dict
    from flwr.common.serde import fab_to_proto, user_config_to_proto
    from flwr.proto.control_pb2 import StartRunRequest
    from flwr.supercore.fab import Fab

    try:
        overrides = flatten_dict(tomllib.loads(run_config_toml))
    except tomllib.TOMLDecodeError as err:
        raise SuperLinkError(f"the run config is not TOML: {err}") from err
    try:
        fab_bytes = build_fab_from_disk(app_dir)
    except Exception as err:  # Flower raises click/typer exceptions and ValueError for a bad app
        raise SuperLinkError(f"the Flower app at {app_dir} cannot be packaged: {err}") from err
    fab = Fab(hashlib.sha256(fab_bytes).hexdigest(), fab_bytes, {})
    request = StartRunRequest(
        fab=fab_to_proto(fab), override_config=user_config_to_proto(overrides), federation="", app_spec=""
    )
    try:
        reply = client.StartRun(request)
    except httpx.HTTPStatusError as err:
        _log.warning("the SuperLink refused the run: %s", _refusal(err))
        raise SuperLinkError(f"the SuperLink refused the run: {_refusal(err)}") from err
    except (OSError, ValueError, httpx.HTTPError) as err:
        raise SuperLinkError(f"the SuperLink's Control API did not start the run: {err}") from err
    if not reply.HasField("run_id"):
        raise SuperLinkError("the SuperLink started no run")
    return str(reply.run_id)


def stop_run(client: Any, run_id: str) -> None:
    """Stop a run (what ``flwr stop RUN_ID`` sends); ``SuperLinkError`` if it was not stopped."""
    from flwr.proto.control_pb2 import StopRunRequest

    try:
        reply = client.StopRun(StopRunRequest(run_id=int(run_id)))
    except httpx.HTTPStatusError as err:
        raise SuperLinkError(f"the SuperLink did not stop run {run_id}: {_refusal(err)}") from err
    except (OSError, ValueError, httpx.HTTPError) as err:
        raise SuperLinkError(f"the SuperLink's Control API did not stop run {run_id}: {err}") from err
    if not reply.success:
        raise SuperLinkError(f"the SuperLink did not stop run {run_id}")


def register_node(client: Any, key: ec.EllipticCurvePublicKey) -> None:
    """Admit a SuperNode's public key (what ``flwr supernode register KEY.pub`` sends).
    Idempotent: a key the SuperLink already holds is accepted."""
    from flwr.proto.control_pb2 import RegisterNodeRequest

    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        reply = client.RegisterNode(RegisterNodeRequest(public_key=pem))
    except httpx.HTTPStatusError as err:
        if _already_registered(err):
            return
        refusal = _refusal(err)
        _log.warning("the SuperLink refused a SuperNode key: %s", refusal)
        raise SuperLinkError(f"the SuperLink refused the SuperNode public key: {refusal}") from err
    except (OSError, ValueError, httpx.HTTPError) as err:
        raise SuperLinkError(f"the SuperLink's Control API did not register the SuperNode: {err}") from err
    if not reply.node_id:
        raise SuperLinkError("the SuperLink registered no SuperNode for the key")


def unregister_node(client: Any, key: ec.EllipticCurvePublicKey) -> int:
    """Remove every SuperNode admitted with ``key`` (what ``flwr supernode ls`` then ``flwr supernode
    unregister NODE_ID`` send); returns how many were removed (0: the SuperLink holds none).

    A SuperNode presenting the key afterwards is refused, as an unregistered one is."""
    from flwr.proto.control_pb2 import ListNodesRequest, UnregisterNodeRequest

    try:
        listed = client.ListNodes(ListNodesRequest())
        held = [
            info.node_id
            for info in listed.nodes_info
            if info.status != "unregistered" and _same_key(bytes(info.public_key), key)
        ]
        for node_id in held:
            client.UnregisterNode(UnregisterNodeRequest(node_id=node_id))
    except httpx.HTTPStatusError as err:
        raise SuperLinkError(f"the SuperLink did not unregister the SuperNode: {_refusal(err)}") from err
    except (OSError, ValueError, httpx.HTTPError) as err:
        raise SuperLinkError(f"the SuperLink's Control API did not unregister the SuperNode: {err}") from err
    return len(held)


def _same_key(stored: bytes, key: ec.EllipticCurvePublicKey) -> bool:
    """Whether the key bytes a SuperLink lists (PEM, DER or OpenSSH) are ``key``."""
    loaders = (
        serialization.load_pem_public_key,
        serialization.load_der_public_key,
        serialization.load_ssh_public_key,
    )
    for load in loaders:
        try:
            listed = load(stored)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            continue
        ours = key.public_numbers()
        return isinstance(listed, ec.EllipticCurvePublicKey) and listed.public_numbers() == ours
    return False


def run_status(client: Any, run_id: str) -> str | None:
    """The run's status as ``flwr ls`` prints it: the status, ``:sub_status`` once there is one.

    None if the SuperLink lists no such run; ``SuperLinkError`` if it cannot be asked.
    """
    from flwr.proto.control_pb2 import ListRunsRequest

    try:
        reply = client.ListRuns(ListRunsRequest(run_id=int(run_id)))
    except httpx.HTTPStatusError as err:
        if err.response.status_code == httpx.codes.NOT_FOUND:  # Flower's RUN_ID_NOT_FOUND
            return None
        _log.warning("the Control API did not list run %s: %s", run_id, err)
        raise SuperLinkError(f"the SuperLink's Control API did not list run {run_id}") from err
    except (OSError, ValueError, httpx.HTTPError) as err:
        _log.warning("the Control API did not list run %s: %s", run_id, err)
        raise SuperLinkError(f"the SuperLink's Control API did not list run {run_id}") from err
    run = reply.run_dict.get(int(run_id))
    if run is None:
        return None
    return f"{run.status.status}:{run.status.sub_status}" if run.status.sub_status else run.status.status
