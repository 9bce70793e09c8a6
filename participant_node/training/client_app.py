"""The node's Flower ClientApp (flwr 1.41 Message API): every message goes to ``job_handler.handle``.

The simulation engine and the deployment engine run this same app (the Flower App the package
ships, ``loyalfed/flower_app``); the node service's warm process calls ``handle`` itself. Error
messages that could quote member data are replaced by their type name (``redact_errors``); the
node's own typed errors are written to be safe and pass through.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import ClientAppCallable, Mod

from participant_node.errors import NodeError
from participant_node.training.errors import TrainingError
from participant_node.training.job_handler import Clock, NodeContext, handle
from protocol import QueryAction

__all__ = ["make_client_app", "redact_errors"]

_log = logging.getLogger(__name__)


def redact_errors(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Flower mod: let the node's typed errors through, replace any other error by its type name."""
    try:
        return call_next(msg, context)
    except NodeError:
        raise
    except Exception as err:  # process boundary of the node: log locally, send only the type
        _log.exception("node failed while handling %s", msg.metadata.message_type)
        raise TrainingError(
            f"node failed while handling {msg.metadata.message_type}: {type(err).__name__}"
        ) from err


def make_client_app(
    partner_dirs: Sequence[Path] | None = None, *, clock: Clock | None = None, mods: Sequence[Mod] = ()
) -> ClientApp:
    """Build the ClientApp.

    Parameters
    ----------
    partner_dirs
        Simulation only: partner folder of each virtual node, by ``partition-id``. In deployment
        every SuperNode names its folder with ``--node-config "partner-dir='...'"``.
    clock
        The moment of use for consent checks (default: now, UTC).
    mods
        Extra Flower mods, run inside ``redact_errors`` (e.g. secure aggregation).
    """
    app = ClientApp(mods=[redact_errors, *mods])
    # Flower's simulation sends this app to a worker with every message (Ray pickles the callable
    # that returns it per call), so what it holds is serialised once per message: the folders travel
    # as strings (unpickling 1,000 Path objects took 25-60 ms a message, i.e. 25-60 s per round at
    # 1,000 nodes, where 1,000 strings take under 1 ms).
    folders = None if partner_dirs is None else tuple(str(d) for d in partner_dirs)

    def serve(msg: Message, context: Context) -> Message:
        return handle(msg, NodeContext.from_node_config(context.node_config, folders, clock))

    for action in QueryAction:
        app.query(action.value)(serve)
    app.train()(serve)
    app.evaluate()(serve)
    return app
