"""A SuperLink in one process, for rounds in tests (SecAgg+ and plain) and bench/fed_secagg.py.

LoopbackGrid gives each message the workflow sends its id (as a push does), hands it to its
member's ClientApp (a deep copy, as a SuperLink delivers one) and returns the replies; a gone
member's message goes unanswered, or with answer_for_gone is answered by the SuperLink's
error reply, built by Flower's own helper as a SuperLink builds it for a dead SuperNode
(from the SuperLink's node id, naming only the message it answers). member_app is a ClientApp with
gridpoint's signing mod around Flower's secaggplus_mod that answers a fixed update, so the
protocol, its cryptography and the signatures take their real path without any training.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from uuid import uuid4

import numpy as np
from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from flwr.compat.common.recorddict_compat import fitres_to_recorddict, recorddict_to_fitins
from flwr.server.superlink.linkstate.utils import create_message_error_unavailable_res_message
from flwr.supercore.task_identity import TaskIdentity

from gridpoint.federation.client_app import secure_aggregation_mod, sign_reply_mod

__all__ = ["RUN_ID", "LoopbackGrid", "deliver", "member_app", "member_context"]

RUN_ID = 77


def member_context(home: Path, node_id: int, federation: str, run_id: int = RUN_ID) -> Context:
    """The Context a member's SuperNode gives its ClientApp: the member's home (node config,
    where the signing mod finds its key) and the federation (run config)."""
    return Context(
        run_id=run_id,
        node_id=node_id,
        node_config={"gridpoint-home": str(home)},
        state=RecordDict(),
        run_config={"federation": federation},
    )


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
    id (unless pushed with one), the task's identity that of the node while the app runs."""
    if not msg.metadata.message_id:
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
    #: (node id, stage) -> True when that member is gone from that stage on; a stage is
    #: SecAgg+'s, or a plain round's message type ("train", "evaluate").
    gone: Callable[[int, str], bool] = lambda nid, stage: False
    #: Whether the SuperLink answers a gone member's message with an error reply (its
    #: SuperNode's heartbeats stopped) rather than leaving it unanswered (a timeout).
    answer_for_gone: bool = False
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
            # Pushed: the very message passed in gets its id, as Flower's grids give it.
            msg.metadata.__dict__["_message_id"] = str(uuid4())
            msg.metadata.__dict__["_run_id"] = RUN_ID
            nid = msg.metadata.dst_node_id
            configs = msg.content.config_records
            stage = (
                str(configs[RECORD_KEY_CONFIGS][Key.STAGE])
                if RECORD_KEY_CONFIGS in configs
                else msg.metadata.message_type
            )
            if self.gone(nid, stage):
                if self.answer_for_gone:
                    replies.append(
                        create_message_error_unavailable_res_message(msg.metadata, "node_unavail")
                    )
                continue
            # A SuperLink delivers a copy: the workflow sends one content to every node.
            reply = deliver(*self.members[nid], copy.deepcopy(msg), nid)
            self.seen.append(reply)
            replies.append(reply)
        return replies
