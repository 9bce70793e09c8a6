"""The node's ClientApp as a SuperNode loads it.

A SuperNode run by ``loyalfed node serve`` names its node service in its node config (``local-url``,
``local-secret-file``): every message is forwarded to that warm service, which applies the node's
own gate (its officer's signature, its yearly cap, the consent gate) before the job engine's
handler (``participant_node.forwarding_client_app``; this process stays import-light). A bare
SuperNode names its partner folder instead (``--node-config "partner-dir='/data/partner'"``, and
optionally ``state-dir``, ``partner-id``) and runs the job engine's handler in this process
(``participant_node.training.client_app``), as the simulation does.

Flower's ``secaggplus_mod`` wraps both (``participant_node.secure_aggregation_mod``). It runs here,
where the SuperNode keeps the run's context (each SecAgg+ stage is a message of its own; the node's
keys and shares live in ``context.state``), and masks the update before it leaves the node. Plain
jobs' messages pass unchanged; in a SecAgg+ round the training stage reaches the node as a legacy
FitIns, which the node service (``participant_node.training.secure_client_app.legacy_fit_serving``)
or the in-process app (``legacy_fit_mod``) serves as the node's ordinary train step, replying with
the update.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from participant_node.forwarding_client_app import LOCAL_SECRET_FILE, LOCAL_URL, QUERY_ACTIONS, forward
from participant_node.secure_aggregation_mod import secure_aggregation_mod

__all__ = ["app"]


@lru_cache(maxsize=1)
def _in_process() -> ClientApp:
    # Imported on first use only: it brings torch and Opacus into this process.
    from participant_node.training.client_app import make_client_app
    from participant_node.training.secure_client_app import legacy_fit_mod

    return make_client_app(mods=[legacy_fit_mod])


def _serve(message: Message, context: Context) -> Message:
    config = context.node_config
    if LOCAL_URL in config:
        secret = Path(str(config[LOCAL_SECRET_FILE])).read_text(encoding="ascii").strip()
        return forward(message, url=str(config[LOCAL_URL]), secret=secret)
    return _in_process()(message, context)


app = ClientApp(mods=[secure_aggregation_mod])
app.train()(_serve)
app.evaluate()(_serve)
for _action in QUERY_ACTIONS:
    app.query(_action)(_serve)
