"""A private record's signed guarantee across a relay: A publishes, B relays, C syncs from B.

Real services, stores and sync code talking through the in-process transport; C's command
line reads its own catalog. The guarantee arrives as A signed it, verifies, is found by
C's `privacy.epsilon` filter and warm-starts C's study with its epsilon shown; a relay that
rewrites the guarantee in transit is refused for its signature.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from optuna.distributions import FloatDistribution

from gridpoint.node.catalog import admit, publish, trust_check
from gridpoint.node.peers.sync import SyncLimits, SyncReport, sync_peer
from gridpoint.node.protocol.methods import FETCH, SYNC
from gridpoint.node.study_reports import WarmStartReport, load_reports, save_report
from gridpoint.node.tuning.warm_search import _rows
from gridpoint.node.tuning.warm_start import choose_priors
from gridpoint.schema import PrivacyGuarantee, RunRecord, TaskDescriptor
from gridpoint.trainers.transfer.sampler import WarmStartSampler
from gridpoint.v1 import catalog_pb2, envelope_pb2, records_pb2
from tests.cli_main import run_main
from tests.helpers import make_record
from tests.inprocess import Network, Node

STUDY = "0123456789abcdef0123456789abcdef"
GUARANTEE = PrivacyGuarantee(epsilon=3.0, delta=1e-5, protected="both", accountant="rdp")


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Network]:
    network = Network(tmp_path)
    yield network
    network.close()


def _private_trial(i: int) -> RunRecord:
    return replace(
        make_record(i, accuracy=0.6 + i / 100, learning_rate=1e-5 * (i + 1)),
        study=STUDY,
        objective_metric="accuracy",
        objective_direction="maximize",
        privacy=GUARANTEE,
    )


def _line(net: Network) -> tuple[Node, Node, Node]:
    """A - B - C, each link trusted both ways; C trusts A as an author but never talks to it."""
    a, b = net.pair("A", "B")
    c = net.add("C")
    net.trust(c, b)
    net.trust(b, c)
    net.trust(c, a)
    return a, b, c


def _pull(net: Network, node: Node, peer: Node) -> SyncReport:
    stored = node.store.get_peer(peer.node_id)
    assert stored is not None
    return sync_peer(node.home, node.store, stored, net.connector(node), SyncLimits())


def test_a_private_records_guarantee_survives_a_relay_signed_and_filterable(
    net: Network, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Prepare: A publishes three trials of a private study and one exact record.
    a, b, c = _line(net)
    private = [publish(a.store, a.home.identity, _private_trial(i)).id for i in range(3)]
    exact = publish(a.store, a.home.identity, replace(make_record(9), study="f" * 32)).id
    # Execute: B syncs A, C syncs B only.
    assert _pull(net, b, a).new == 4
    report = _pull(net, c, b)
    # Assert: C holds A's envelopes byte for byte, each verifies, guarantee unchanged.
    assert report.new == 4 and not report.refused
    for record_id in private:
        held = c.store.get_record(record_id)
        original = a.store.get_record(record_id)
        assert held is not None and original is not None
        assert held.envelope == original.envelope and held.signer_id == a.node_id
        assert held.record.privacy == GUARANTEE
        again = admit(
            envelope_pb2.SignedEnvelope.FromString(held.envelope),
            trust_check(c.store, c.node_id),
        )
        assert again.id == record_id and again.record.privacy == GUARANTEE
    # C's command line finds them by their epsilon, and only them.
    found = run_main(
        capsys, "catalog", "query", "privacy.epsilon <= 4", "--json", home=c.home.path
    ).json()
    assert {row["id"] for row in found} == set(private)
    assert exact not in {row["id"] for row in found}
    assert {row["privacy"]["epsilon"] for row in found} == {3.0}
    none = run_main(
        capsys, "catalog", "query", "privacy.epsilon < 3", "--json", home=c.home.path
    ).json()
    assert none == []
    # And C's warm start takes the relayed study as a noisy prior with its epsilon.
    choice = choose_priors(
        c.store, task=TaskDescriptor("text-classification"), objective_metric="accuracy"
    )
    [prior] = [p for p in choice.priors if p.epsilon is not None]
    assert (prior.epsilon, prior.delta, len(prior.trials)) == (3.0, 1e-5, 3)
    assert prior.noise > 0
    # The prior report `tune` prints and keeps names its epsilon; the exact prior says so.
    sampler = WarmStartSampler(choice.priors, {"learning_rate": FloatDistribution(1e-6, 1e-3)})
    save_report(tmp_path, "s", WarmStartReport(sampler.method, _rows(sampler, choice)))
    [kept] = load_reports(tmp_path, "s")
    shown = {row.prior: row.privacy for row in kept.priors}
    assert shown[prior.label].startswith("epsilon 3, delta 1e-05; noise ±")
    assert set(shown.values()) - {shown[prior.label]} == {"exact"}


def test_a_guarantee_rewritten_in_transit_fails_verification(net: Network) -> None:
    # Prepare: B relays A's private record, but rewrites its epsilon on the way to C.
    a, b, c = _line(net)
    record_id = publish(a.store, a.home.identity, _private_trial(0)).id
    _pull(net, b, a)

    def rewriting(method: str, raw: bytes, auth: bytes | None, tls: str | None) -> bytes:
        answer = b.service.handle(method, raw, auth, tls)
        # Records come whole in a sync page, or by Fetch after a page of references.
        message: catalog_pb2.SyncPage | catalog_pb2.FetchResponse
        if method == SYNC:
            message = catalog_pb2.SyncPage.FromString(answer)
        elif method == FETCH:
            message = catalog_pb2.FetchResponse.FromString(answer)
        else:
            return answer
        for envelope in message.envelopes:
            record = records_pb2.RunRecord.FromString(envelope.payload)
            record.privacy.epsilon = 0.5
            envelope.payload = record.SerializeToString(deterministic=True)
        return bytes(message.SerializeToString())

    net.crafted[b.node_id] = rewriting
    # Execute
    report = _pull(net, c, b)
    # Assert: refused for its signature; C holds no record claiming A's study cost 0.5.
    assert report.received == 1 and report.new == 0
    assert dict(report.refused) == {"bad-signature": 1}
    assert c.store.get_record(record_id) is None
    assert not c.store.query(None, limit=10)
