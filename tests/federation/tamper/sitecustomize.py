"""Makes a test member dishonest: every Python process it starts signs the wrong digest.

On PYTHONPATH of one member's `fed join`, Python imports this module at start-up in the
SuperNode, its SuperExec and each ClientApp, before gridpoint's ClientApp imports
update_digest; the member then signs a digest of metrics it never sent, as a member that
changed its update after signing would. The product carries no fault-injection switch.
"""

from typing import Any

import gridpoint.federation.update_signing as signing

_honest_digest = signing.update_digest


def _tampered_digest(ctx: Any, signer_id: str, arrays: Any, metrics: Any) -> bytes:
    return _honest_digest(ctx, signer_id, arrays, {**metrics, "tampered": 1.0})


signing.update_digest = _tampered_digest
