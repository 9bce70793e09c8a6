"""The node's thin ClientApp: forwards every message to the node's warm service over loopback.

Flower's SuperNode starts a fresh ClientApp process per message, so this module imports only
Flower and the standard library (no torch, no pandas): a round costs a process start, not a
model-stack import. The warm service (``loyalfed node serve``) holds the node's gate — its own data
officer's signature check, its accountant and yearly cap, the consent gate — and the job engine.

The SuperNode names the service with its node config: ``local-url`` (``http://127.0.0.1:PORT``)
and ``local-secret-file`` (the node-local secret, 0600 in the node's state folder); a SuperNode
without them refuses every message (the simulation engine runs the in-process ClientApp instead).
Each message carries the hash of the app this process runs (``X-Loyalfed-Flower-App``, as the node's
approving launcher found it), which the node's gate checks against the job's signed policy.
"""

from __future__ import annotations

import http.client
import os
import urllib.parse
from pathlib import Path

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.common.serde import message_to_proto, recorddict_from_proto
from flwr.proto.recorddict_pb2 import RecordDict as ProtoRecordDict  # type: ignore[attr-defined]

from participant_node.approved_apps import RUNNING_APP_ENV
from participant_node.secure_aggregation_mod import secure_aggregation_mod

__all__ = ["QUERY_ACTIONS", "ForwardingError", "app", "forward"]

LOCAL_URL = "local-url"
LOCAL_SECRET_FILE = "local-secret-file"
_PATH = "/local/v1/job-message"
_SECRET_HEADER = "X-Loyalfed-Node-Secret"
_APP_HEADER = "X-Loyalfed-Flower-App"
# A training step on a busy 2-core machine can take minutes; the round timeout bounds it anyway.
_TIMEOUT_S = 900.0


class ForwardingError(RuntimeError):
    """The node service did not serve the message; the text is the service's own safe message."""


def forward(message: Message, *, url: str, secret: str) -> Message:
    """POST ``message`` to the node service at ``url`` and wrap its reply content."""
    target = urllib.parse.urlsplit(url)
    if target.scheme != "http" or target.hostname not in {"127.0.0.1", "localhost", "::1"}:
        raise ForwardingError(f"the node service must listen on loopback, not {url}")
    connection = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=_TIMEOUT_S)
    try:
        body = message_to_proto(message).SerializeToString()
        headers = {
            "Content-Type": "application/octet-stream",
            _SECRET_HEADER: secret,
            _APP_HEADER: os.environ.get(RUNNING_APP_ENV, ""),
        }
        connection.request("POST", _PATH, body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
    except OSError as err:
        raise ForwardingError(f"node service unreachable at {url}: {type(err).__name__}") from err
    finally:
        connection.close()
    if response.status != 200:
        raise ForwardingError(f"node service answered HTTP {response.status}: {payload[:300]!r}")
    proto = ProtoRecordDict()
    proto.ParseFromString(payload)
    return Message(recorddict_from_proto(proto), reply_to=message)


def _serve(message: Message, context: Context) -> Message:
    config = context.node_config
    if LOCAL_URL not in config or LOCAL_SECRET_FILE not in config:
        raise ForwardingError(
            "this SuperNode is not run by `loyalfed node serve` (no local-url in its node config)"
        )
    secret = Path(str(config[LOCAL_SECRET_FILE])).read_text(encoding="ascii").strip()
    return forward(message, url=str(config[LOCAL_URL]), secret=secret)


app = ClientApp(mods=[secure_aggregation_mod])  # SecAgg+ stages, where the run's context lives
app.train()(_serve)
app.evaluate()(_serve)
app.query()(_serve)
# protocol.QueryAction's values, spelled out so this module stays import-light (a test pins them).
QUERY_ACTIONS = ("describe", "feature_moments", "privacy_spent", "group_labels")
for _action in QUERY_ACTIONS:
    app.query(_action)(_serve)
