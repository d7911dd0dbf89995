"""Six real daemons in a line: a record relays from one end to the other by their own syncs."""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

from gridpoint.node.home import NodeHome
from gridpoint.node.store.sql_store import open_store
from tests.helpers import Daemon, MakeHome, pin, set_sync, signed_records


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_record_relays_down_a_line_of_six_daemons_by_their_periodic_sync(
    make_home: MakeHome, daemons: list[Daemon]
) -> None:
    # Prepare: N0 - N1 - ... - N5, each pair trusting each other, rounds every second. Every
    # node also pins N0's key (the author) at a closed port: the record can only come by relay.
    homes = [set_sync(make_home(f"N{i}"), interval_s=1.0) for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        started = list(pool.map(Daemon.start, homes))
    daemons += started
    nowhere = f"127.0.0.1:{_closed_port()}"
    for i, home in enumerate(homes):
        store = open_store(home.db_url())
        try:
            for j in (i - 1, i + 1):
                if 0 <= j < 6:
                    pin(store, homes[j], started[j].address)
            if i > 1:
                pin(store, homes[0], nowhere)
        finally:
            store.close()
    [record] = signed_records(homes[0], 1)
    end = open_store(homes[5].db_url())
    try:
        # Execute: N0 publishes; nobody runs a sync but the daemons themselves.
        first = open_store(homes[0].db_url())
        first.add_records([record])
        first.close()
        deadline = time.monotonic() + 60
        while end.get_record(record.id) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        # Assert: N5 holds it, as N0 signed it, served by N4; N0 (down for it) logged once.
        held = end.get_record(record.id)
        sources = {s.peer_id for s in end.record_sources(record.id)}
    finally:
        end.close()
    assert held is not None and held.signer_id == homes[0].identity.node_id
    assert sources == {homes[4].identity.node_id}
    assert _events(started[5], "peer unreachable", homes[0]) == 1


def _events(daemon: Daemon, event: str, peer: NodeHome) -> int:
    lines = [json.loads(x) for x in daemon.log().splitlines() if x.startswith("{")]
    return sum(1 for e in lines if e["event"] == event and e.get("peer") == peer.identity.node_id)
