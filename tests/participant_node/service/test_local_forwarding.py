"""The thin ClientApp and the node's loopback endpoint, over real HTTP on 127.0.0.1.

The ClientApp process must stay import-light (a fresh process per message under the SuperNode):
importing it pulls in neither torch nor pandas.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.app.message_type import MessageType
from flwr.supercore.task_identity import TaskIdentity

from participant_node.approved_apps import RUNNING_APP_ENV
from participant_node.errors import NodeError
from participant_node.forwarding_client_app import ForwardingError, forward
from participant_node.service.local_api import RUNNING_APP, create_local_app

SECRET = "a" * 64


def _serve(message: Message) -> RecordDict:
    # The warm service's contract: the reply's content for a message (here: echo its type).
    if message.metadata.message_type == MessageType.EVALUATE:
        raise NodeError("only 3 held-out members; evaluation needs at least k=20")
    seen = {"seen": message.metadata.message_type, "app": RUNNING_APP.get() or "none"}
    return RecordDict({"node": ConfigRecord(seen)})


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def local_url() -> Iterator[str]:
    port = free_loopback_port()
    server = uvicorn.Server(uvicorn.Config(create_local_app(_serve, SECRET), host="127.0.0.1", port=port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(autouse=True)
def server_task() -> Iterator[None]:
    # A message is created by the ServerApp's task (Flower sets its identity in that process).
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    yield
    TaskIdentity.task_id = TaskIdentity.run_id = TaskIdentity.node_id = None  # type: ignore[assignment]


def _message(kind: str) -> Message:
    return Message(RecordDict({"config": ConfigRecord({"k": 1})}), dst_node_id=7, message_type=kind)


def test_a_message_goes_to_the_node_service_and_its_reply_comes_back(local_url: str) -> None:
    message = _message(f"{MessageType.QUERY}.describe")
    reply = forward(message, url=local_url, secret=SECRET)
    assert reply.content["node"]["seen"] == "query.describe"
    assert reply.metadata.reply_to_message_id == message.metadata.message_id
    assert reply.content["node"]["app"] == "none"  # not run by the approving launcher: no app named


def test_the_service_is_told_which_approved_app_brought_the_message(
    local_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The approving launcher leaves the installed FAB's hash in the ClientApp process's environment.
    monkeypatch.setenv(RUNNING_APP_ENV, "AB" * 32)
    reply = forward(_message(f"{MessageType.QUERY}.describe"), url=local_url, secret=SECRET)
    assert reply.content["node"]["app"] == "ab" * 32


def test_a_wrong_secret_is_refused(local_url: str) -> None:
    with pytest.raises(ForwardingError, match="HTTP 401"):
        forward(_message(MessageType.TRAIN), url=local_url, secret="b" * 64)


def test_the_nodes_own_error_comes_back_as_its_safe_message(local_url: str) -> None:
    with pytest.raises(ForwardingError, match=r"HTTP 422.*needs at least k=20"):
        forward(_message(MessageType.EVALUATE), url=local_url, secret=SECRET)


def test_only_a_loopback_service_is_used() -> None:
    with pytest.raises(ForwardingError, match="must listen on loopback"):
        forward(_message(MessageType.TRAIN), url="http://10.0.0.7:8801", secret=SECRET)


def test_a_malformed_body_is_a_400_without_echo(local_url: str) -> None:
    import httpx

    response = httpx.post(
        f"{local_url}/local/v1/job-message", content=b"\xff" * 40, headers={"X-Loyalfed-Node-Secret": SECRET}
    )
    assert response.status_code == 400
    assert response.json() == {"error": {"code": 400, "message": "body is not a Flower message"}}


def test_the_client_app_module_imports_neither_torch_nor_pandas() -> None:
    code = (
        "import sys, participant_node.forwarding_client_app as m; "
        "print(sorted(x for x in ('torch', 'pandas', 'opacus') if x in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
