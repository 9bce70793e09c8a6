"""The node's ClientApp as a SuperNode loads it.

A SuperNode run by ``loyalfed node serve`` names its node service in its node config (``local-url``,
``local-secret-file``): every message is forwarded to that warm service, which applies the node's
own gate (its officer's signature, its yearly cap, the consent gate) before the job engine's
handler (``participant_node.forwarding_client_app``; this process stays import-light). A bare
SuperNode names its partner folder instead (``--node-config "partner-dir='/data/partner'"``, and
optionally ``state-dir``, ``partner-id``) and runs the job engine's handler in this process
(``participant_node.training.client_app``), as the simulation does.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from participant_node.forwarding_client_app import LOCAL_SECRET_FILE, LOCAL_URL, QUERY_ACTIONS, forward

__all__ = ["app"]


@lru_cache(maxsize=1)
def _in_process() -> ClientApp:
    # Imported on first use only: it brings torch and Opacus into this process.
    from participant_node.training.client_app import make_client_app

    return make_client_app()


def _serve(message: Message, context: Context) -> Message:
    config = context.node_config
    if LOCAL_URL in config:
        secret = Path(str(config[LOCAL_SECRET_FILE])).read_text(encoding="ascii").strip()
        return forward(message, url=str(config[LOCAL_URL]), secret=secret)
    return _in_process()(message, context)


app = ClientApp()
app.train()(_serve)
app.evaluate()(_serve)
for _action in QUERY_ACTIONS:
    app.query(_action)(_serve)
