"""Makes a test member hang after training, before it hands its update to Flower.

On PYTHONPATH of one member's `fed join`, Python imports this module at start-up in each of
its processes; in the ClientApp, once a round's training is written to the member's status
file, the process sleeps instead of replying, until the test kills the member. Killed there,
the member is gone mid-round with no reply begun: the host waits --round-timeout for it.
(Killed while Flower uploads a reply, the host would wait out Flower's fixed 180 s
object-push session instead, whatever its round timeout.) The product carries no
fault-injection switch.
"""

import time
from typing import Any

import gridpoint.federation.client_app as client_app

_write_status = client_app._write_status


def _hang_after_training(context: Any, server_round: int, total: int, metrics: Any) -> None:
    _write_status(context, server_round, total, metrics)
    if "train_loss" in metrics:
        time.sleep(3600)  # the test kills this member here


client_app._write_status = _hang_after_training
