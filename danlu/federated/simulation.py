"""An in-process Flower simulation: the real ClientApp and ServerApp code, clients called one after another.

Flower's own simulation engine runs on Ray (heavy, and known for out-of-memory reports on small machines);
this Grid hands each message straight to the ClientApp in the same process, so a 100-client federation costs
one model and one copy of the data.
"""

from __future__ import annotations

from collections.abc import Iterable
from uuid import uuid4

from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity


class InProcessGrid(Grid):
    """K simulated SuperNodes; node i holds partition i."""

    def __init__(self, client_app: ClientApp, run_config: dict, clients: int, run_id: int = 1):
        self.client_app = client_app
        self._run = Run.create_empty(run_id)
        # the identity a SuperLink gives its ServerApp process: new messages are stamped with it
        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, run_id, SUPERLINK_NODE_ID
        self.contexts = {node_id: Context(run_id=run_id, node_id=node_id,
                                          node_config={"partition-id": i, "num-partitions": clients},
                                          state=RecordDict(), run_config=dict(run_config))
                         for i, node_id in enumerate(range(1001, 1001 + clients))}
        self.replies: dict[str, Message] = {}

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str,
                       ttl: float | None = None) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for msg in messages:
            msg_id = str(uuid4())
            msg.metadata.__dict__["_message_id"] = msg_id  # as Flower's InMemoryGrid numbers its messages
            # an error in a client is raised here, not turned into an error reply: it is ours to show
            self.replies[msg_id] = self.client_app(msg, self.contexts[msg.metadata.dst_node_id])
            ids.append(msg_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self.replies.pop(i) for i in list(message_ids) if i in self.replies]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        return self.pull_messages(self.push_messages(messages))
