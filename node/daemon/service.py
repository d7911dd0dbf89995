"""What a node answers its peers, independent of gRPC.

The gRPC servicers (server.py) and the in-process transport of tests call the same code:
authenticate a signed request over its raw bytes, decode it, answer from the store, cut by the
sharing policy for the authenticated caller (control/sharing.py), and for Artifacts from the
artifact service it holds; every envelope, manifest and model sent is noted in the outbound
ledger. Errors are GridpointErrors; the transport turns them into a status
(gridpoint.node.protocol.rpc_errors). A caller whose key was revoked is not trusted.

Must never trust a request before authenticate() accepted it, accept a TLS certificate other
than the one pinned for the caller (a pinned certificate is no authority for other names),
decode a stored record to serve it, or read and answer more than the message budget allows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from google.protobuf.message import DecodeError, Message

from gridpoint import __version__
from gridpoint.errors import BadSignature, RequestError
from gridpoint.node.artifacts.service import ArtifactService
from gridpoint.node.artifacts.store import ArtifactStore
from gridpoint.node.control.ledger import Ledger, LedgeredArtifacts
from gridpoint.node.control.policy import PolicySource
from gridpoint.node.control.sharing import Sharing
from gridpoint.node.home import NodeHome
from gridpoint.node.protocol.envelope import sign_envelope
from gridpoint.node.protocol.methods import (
    ARTIFACTS_DOWNLOAD,
    ARTIFACTS_GET_MANIFEST,
    ARTIFACTS_LIST,
    FETCH,
    HELLO,
    QUERY,
    SYNC,
)
from gridpoint.node.protocol.repeated import encoded_repeated
from gridpoint.node.protocol.request_auth import ReplayGuard, verify_request
from gridpoint.node.protocol.tls import fingerprint
from gridpoint.node.store.base import CatalogStore
from gridpoint.node.store.query_filter import parse_filter, parse_order_by
from gridpoint.v1 import artifacts_pb2, catalog_pb2, envelope_pb2, node_pb2

__all__ = [
    "DEFAULT_PAGE",
    "MAX_PAGE",
    "MAX_QUERY",
    "NodeService",
    "RequestAuthenticator",
]

DEFAULT_PAGE = 500
MAX_PAGE = 5000
MAX_QUERY = 1000
# Room left in a message for everything around the envelopes.
_PAGE_OVERHEAD = 16 * 1024
_QUERY_RESPONSE = catalog_pb2.QueryResponse.DESCRIPTOR


@dataclass(frozen=True)
class RequestAuthenticator:
    """Checks a signed request: signature over the raw bytes, trusted caller, fresh, no replay.

    pinned gives the TLS fingerprint pinned for a node id (None: not trusted). tls_name, when
    the transport has one, is the common name of the certificate the caller presented, and
    tls_cert that certificate (PEM): the signer must be that node, and the certificate exactly
    the one pinned for it. The TLS handshake alone accepts any certificate a pinned one
    signed, since pinned certificates are self-signed CAs.
    """

    pinned: Callable[[str], str | None]
    guard: ReplayGuard

    def __call__(
        self,
        method: str,
        raw: bytes,
        auth: bytes | None,
        tls_name: str | None,
        tls_cert: bytes | None = None,
    ) -> str:
        if auth is None:
            raise BadSignature("request is not signed")
        pins: dict[str, str | None] = {}

        def is_trusted(caller: str) -> bool:
            pins[caller] = self.pinned(caller)
            return pins[caller] is not None

        caller = verify_request(auth, method, raw, is_trusted=is_trusted, guard=self.guard)
        if tls_name is not None and tls_name != caller:
            raise BadSignature("request signer is not the TLS peer")
        if tls_cert is not None and fingerprint(tls_cert) != pins[caller]:
            raise BadSignature("the TLS certificate is not the one pinned for this peer")
        return caller


class NodeService:
    """Hello, Catalog.Sync, .Fetch, .Query and Artifacts of one node, over its home and store."""

    def __init__(
        self,
        home: NodeHome,
        store: CatalogStore,
        artifacts: ArtifactService | None = None,
        policy: PolicySource | None = None,
    ) -> None:
        limits = home.config.security
        self._home = home
        self._store = store
        self._budget = limits.max_message_bytes - _PAGE_OVERHEAD
        info = node_pb2.NodeInfo(
            node_id=home.identity.node_id,
            name=home.config.name,
            public_key=home.identity.public_key,
            tls_fingerprint=home.tls_fingerprint,
            protocol="gridpoint.v1",
            software_version=__version__,
        )
        self._info = info.SerializeToString()
        self.authenticate = RequestAuthenticator(
            store.pinned_fingerprint, ReplayGuard(limits.request_window_s)
        )
        self.ledger = Ledger(store, home.config.ledger.detail_days)
        self.policy = policy or PolicySource(home.config_path, home.secret)
        self._sharing = Sharing(home, store, self.policy, self.ledger, self._budget)
        self.artifacts = artifacts or LedgeredArtifacts(
            ArtifactStore(home, store), limits.max_message_bytes, self.ledger
        )
        # Each method's request type, and what answers it with the answer's bytes.
        self._methods: dict[str, tuple[type[Message], Callable[[str, Message], bytes]]] = {
            HELLO: (node_pb2.HelloRequest, lambda _caller, _r: self.hello().SerializeToString()),
            SYNC: (catalog_pb2.SyncRequest, self._sync_any),
            FETCH: (catalog_pb2.FetchRequest, self._fetch_any),
            QUERY: (catalog_pb2.QueryRequest, self._query_any),
            ARTIFACTS_LIST: (artifacts_pb2.ListArtifactsRequest, self._list_any),
            ARTIFACTS_GET_MANIFEST: (artifacts_pb2.GetManifestRequest, self._manifest_any),
        }

    def close(self) -> None:
        """Writes what the ledger still holds in memory (repeats' counts); before the store
        closes."""
        self.ledger.close()

    def hello(self) -> node_pb2.HelloResponse:
        """This node's NodeInfo, freshly signed."""
        envelope = sign_envelope(
            self._home.identity, self._info, node_pb2.NodeInfo.DESCRIPTOR.full_name
        )
        return node_pb2.HelloResponse(envelope=envelope)

    def sync(self, request: catalog_pb2.SyncRequest, caller: str = "") -> catalog_pb2.SyncPage:
        """The page after request.cursor for caller (statements first, records as the sharing
        policy lets caller have them), cut before the message budget."""
        limit = min(request.limit or DEFAULT_PAGE, MAX_PAGE)
        return self._sharing.sync_page(caller, request, limit)

    def fetch(
        self, request: catalog_pb2.FetchRequest, caller: str = ""
    ) -> catalog_pb2.FetchResponse:
        """The records a refs_only sync page offered, by stored id, that caller may have (at
        most MAX_PAGE ids read per call), cut before the message budget."""
        if any(len(i) != 32 for i in request.ids):
            raise RequestError("a fetched id is not 32 bytes")
        ids = [i.hex() for i in request.ids[:MAX_PAGE]]
        envelopes, answered = self._sharing.fetch(caller, ids)
        out = catalog_pb2.FetchResponse(answered=answered)
        out.envelopes.extend(envelope_pb2.SignedEnvelope.FromString(e) for e in envelopes)
        return out

    def _matching(self, request: catalog_pb2.QueryRequest, caller: str) -> list[bytes]:
        """The envelopes of the records matching request.filter that caller may have, as
        stored, cut before the message budget (the store stops reading there: rows past it
        are never fetched, let alone decoded). An unnamed caller gets only what every
        trusted peer gets."""
        where = parse_filter(request.filter)
        order = parse_order_by(request.order_by)
        limit = min(request.limit or 100, MAX_QUERY)
        # Each envelope costs a few bytes of framing in the answer besides its own.
        return self._sharing.answer(caller, where, limit, order, self._budget - 8 * limit)

    def handle(self, method: str, raw: bytes, auth: bytes | None, tls_name: str | None) -> bytes:
        """One whole call as raw bytes: authenticate, decode, answer, encode."""
        if method not in self._methods:
            raise RequestError(f"unknown method {method}")
        return self.answer(method, self.authenticate(method, raw, auth, tls_name), raw)

    def answer(self, method: str, caller: str, raw: bytes) -> bytes:
        """The answer to one call that authenticate() accepted from caller, as raw bytes:
        decode, answer, encode."""
        if method not in self._methods:
            raise RequestError(f"unknown method {method}")
        request_type, answer = self._methods[method]
        return answer(caller, _decoded(request_type, raw))

    def handle_stream(
        self, method: str, raw: bytes, auth: bytes | None, tls_name: str | None
    ) -> Iterator[bytes]:
        """One whole streaming call (Artifacts.Download) as raw bytes; closing the iterator
        ends the call and frees what it holds."""
        if method != ARTIFACTS_DOWNLOAD:
            raise RequestError(f"unknown method {method}")
        caller = self.authenticate(method, raw, auth, tls_name)
        request = _decoded(artifacts_pb2.DownloadRequest, raw)
        assert isinstance(request, artifacts_pb2.DownloadRequest)
        download = self.artifacts.download(caller, request)
        try:
            for chunk in download.chunks:
                yield chunk.SerializeToString()
        finally:
            download.release()

    def _sync_any(self, caller: str, request: Message) -> bytes:
        assert isinstance(request, catalog_pb2.SyncRequest)
        return self.sync(request, caller).SerializeToString()

    def _fetch_any(self, caller: str, request: Message) -> bytes:
        assert isinstance(request, catalog_pb2.FetchRequest)
        return self.fetch(request, caller).SerializeToString()

    def _query_any(self, caller: str, request: Message) -> bytes:
        """A live answer's bytes written from its envelopes as stored, never decoded and
        encoded again (node/protocol/repeated.py): a stored envelope some other program
        damaged reaches the asker as it is, whose transport refuses the answer."""
        assert isinstance(request, catalog_pb2.QueryRequest)
        return encoded_repeated(_QUERY_RESPONSE, "envelopes", self._matching(request, caller))

    def _list_any(self, caller: str, request: Message) -> bytes:
        assert isinstance(request, artifacts_pb2.ListArtifactsRequest)
        return self.artifacts.list(caller, request).SerializeToString()

    def _manifest_any(self, caller: str, request: Message) -> bytes:
        assert isinstance(request, artifacts_pb2.GetManifestRequest)
        return self.artifacts.get_manifest(caller, request).SerializeToString()


def _decoded(request_type: type[Message], raw: bytes) -> Message:
    try:
        return request_type.FromString(raw)
    except DecodeError:
        raise RequestError("request is not a valid message") from None
