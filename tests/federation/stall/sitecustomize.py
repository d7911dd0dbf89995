"""Makes a test member hang after training, before it hands its update to Flower.

On PYTHONPATH of one member's `fed join`, Python imports this module at start-up in each of
its processes; in the ClientApp, once a round's training is written to the member's status
file, the process sleeps instead of replying, until the test kills the member. Killed there,
the member is gone mid-round with no reply begun: the host waits --round-timeout for it.
(Killed while Flower uploads a reply, the host would wait out Flower's fixed 180 s
object-push session instead, whatever its round timeout.) The product carries no
fault-injection switch.

The member also sends its SuperNode's heartbeats at Flower's shortest interval (10 s, not
the default 30 s), set before Flower reads it: the SuperLink gives up on a silent node after
two intervals, so the round learns of the kill in 20 s rather than a minute of the suite.
"""

import time
from typing import Any

import flwr.common.constant as flower_constants
import flwr.supercore.heartbeat as heartbeat
import flwr.supernode.fleet_http_connection as fleet_connection

# The two users import the constant by name, so each module's copy is set.
for module in (flower_constants, heartbeat, fleet_connection):
    vars(module)["HEARTBEAT_DEFAULT_INTERVAL"] = flower_constants.HEARTBEAT_MIN_INTERVAL

import gridpoint.federation.client_app as client_app  # noqa: E402

_write_status = client_app._write_status


def _hang_after_training(context: Any, server_round: int, total: int, metrics: Any) -> None:
    _write_status(context, server_round, total, metrics)
    if "train_loss" in metrics:
        time.sleep(3600)  # the test kills this member here


client_app._write_status = _hang_after_training
