"""The node's ClientApp as a SuperNode loads it; each SuperNode names its partner folder with
``--node-config "partner-dir='/data/partner'"`` (and optionally ``state-dir``, ``partner-id``)."""

from participant_node.training.client_app import make_client_app

app = make_client_app()

__all__ = ["app"]
