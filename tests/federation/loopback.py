"""A SuperLink in one process, for SecAgg+ rounds in tests and bench/fed_secagg.py.

LoopbackGrid hands each message the workflow sends to its member's ClientApp (a deep copy,
as a SuperLink delivers one) and returns the replies; member_app is a ClientApp with
gridpoint's signing mod around Flower's secaggplus_mod that answers a fixed update, so the
protocol, its cryptography and the signatures take their real path without any training.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from uuid import uuid4

import numpy as np
from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from flwr.compat.common.recorddict_compat import fitres_to_recorddict, recorddict_to_fitins
from flwr.supercore.task_identity import TaskIdentity

from gridpoint.federation.client_app import secure_aggregation_mod, sign_reply_mod

__all__ = ["RUN_ID", "LoopbackGrid", "deliver", "member_app"]

RUN_ID = 77


def member_app(update: dict[str, np.ndarray], examples: int) -> ClientApp:
    """A member that trains nothing: it answers `update`, weighted by `examples`."""
    app = ClientApp()

    @app.train(mods=[sign_reply_mod, secure_aggregation_mod])
    def train(msg: Message, context: Context) -> Message:
        fitins = recorddict_to_fitins(msg.content, keep_input=True)
        keys = [str(k) for k in json.loads(str(fitins.config["array-keys"]))]
        fitres = FitRes(
            Status(Code.OK, ""),
            ndarrays_to_parameters([update[k] for k in keys]),
            examples,
            {"train_loss": float(examples) / 100},
        )
        return Message(content=fitres_to_recorddict(fitres, keep_input=False), reply_to=msg)

    return app


def deliver(app: ClientApp, context: Context, msg: Message, node_id: int) -> Message:
    """node_id's reply to msg, its ClientApp run as a SuperNode runs it: the message given its
    id, the task's identity that of the node while the app runs."""
    msg.metadata.__dict__["_message_id"] = str(uuid4())
    TaskIdentity.node_id = node_id
    try:
        return app(msg, context)
    finally:
        TaskIdentity.node_id = 0


@dataclass
class LoopbackGrid:
    """A SuperLink in one process: each message is handled by its node's ClientApp."""

    members: dict[int, tuple[ClientApp, Context]]
    #: (node id, stage) -> True when that member is gone from that stage on.
    gone: Callable[[int, str], bool] = lambda nid, stage: False
    seen: list[Message] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Outside a Flower runtime, a Message takes its ids from the task's identity.
        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, RUN_ID, 0

    def get_node_ids(self) -> Iterable[int]:
        return list(self.members)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> list[Message]:
        replies = []
        for msg in messages:
            nid = msg.metadata.dst_node_id
            stage = str(msg.content.config_records[RECORD_KEY_CONFIGS][Key.STAGE])
            if self.gone(nid, stage):
                continue
            msg.metadata.__dict__["_run_id"] = RUN_ID
            # A SuperLink delivers a copy: the workflow sends one content to every node.
            reply = deliver(*self.members[nid], copy.deepcopy(msg), nid)
            self.seen.append(reply)
            replies.append(reply)
        return replies
