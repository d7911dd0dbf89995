"""The Artifacts client: one trusted peer, over mutual TLS pinned to its certificate.

Every request is serialized once and those bytes are signed (RequestAuth), like the catalog's
calls. Failures come out as PeerError / ArtifactNotFound, never as a gRPC exception; a peer
whose download slots are all taken is asked again a few times before giving up.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import TracebackType

import grpc

from gridpoint.errors import PeerError
from gridpoint.node.home import NodeHome
from gridpoint.node.protocol.request_auth import AUTH_METADATA_KEY, sign_request
from gridpoint.node.protocol.rpc_errors import status_to_error
from gridpoint.node.protocol.tls import tls_hostname
from gridpoint.node.store.base import Peer
from gridpoint.v1 import artifacts_pb2

__all__ = ["DOWNLOAD", "GET_MANIFEST", "LIST", "ArtifactClient"]

LIST = "/gridpoint.v1.Artifacts/List"
GET_MANIFEST = "/gridpoint.v1.Artifacts/GetManifest"
DOWNLOAD = "/gridpoint.v1.Artifacts/Download"
#: How long one download stream may take at most (the server ends its own sooner).
_STREAM_TIMEOUT_S = 600.0
_BUSY_TRIES = 10
_BUSY_WAIT_S = 1.0
# Room above the largest chunk for the chunk message's own fields.
_CHUNK_OVERHEAD = 64 * 1024


class ArtifactClient:
    """Calls Artifacts on one peer as this node. Close it when done (a context manager)."""

    def __init__(self, home: NodeHome, peer: Peer) -> None:
        self._identity = home.identity
        self.peer = peer
        self._timeout = home.config.sync.timeout_s
        limit = max(home.config.security.max_message_bytes, 2 * 1024 * 1024 + _CHUNK_OVERHEAD)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=peer.cert_pem,
            private_key=home.tls.key_pem,
            certificate_chain=home.tls.cert_pem,
        )
        self._channel = grpc.secure_channel(
            peer.address,
            credentials,
            options=[
                ("grpc.ssl_target_name_override", tls_hostname(peer.node_id)),
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", 64 * 1024),
            ],
        )

    def __enter__(self) -> ArtifactClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def list(self, limit: int = 0) -> list[bytes]:
        """The manifest envelopes (serialized) this peer lets us fetch."""
        raw = self._unary(LIST, artifacts_pb2.ListArtifactsRequest(limit=limit).SerializeToString())
        answer = artifacts_pb2.ListArtifactsResponse.FromString(raw)
        return [m.SerializeToString(deterministic=True) for m in answer.manifests]

    def get_manifest(self, artifact_id: str) -> bytes:
        """The signed manifest envelope (serialized) of one artifact, not yet verified."""
        body = artifacts_pb2.GetManifestRequest(artifact_id=artifact_id).SerializeToString()
        answer = artifacts_pb2.GetManifestResponse.FromString(self._unary(GET_MANIFEST, body))
        return answer.manifest.SerializeToString(deterministic=True)

    def download(
        self, artifact_id: str, file_index: int, offset: int
    ) -> Iterator[artifacts_pb2.ArtifactChunk]:
        """The chunks from (file_index, offset) on, as the peer sends them (not verified)."""
        body = artifacts_pb2.DownloadRequest(
            artifact_id=artifact_id, file_index=file_index, offset=offset
        ).SerializeToString()
        stub: grpc.UnaryStreamMultiCallable[bytes, artifacts_pb2.ArtifactChunk] = (
            self._channel.unary_stream(
                DOWNLOAD,
                request_serializer=None,
                response_deserializer=artifacts_pb2.ArtifactChunk.FromString,
            )
        )
        for attempt in range(_BUSY_TRIES):
            stream = stub(
                body,
                metadata=((AUTH_METADATA_KEY, sign_request(self._identity, DOWNLOAD, body)),),
                timeout=_STREAM_TIMEOUT_S,
            )
            try:
                yield from stream
                return
            except grpc.RpcError as err:
                busy = err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                if not busy:
                    raise status_to_error(err, self.peer.address) from None
                if attempt == _BUSY_TRIES - 1:
                    raise PeerError(
                        f"peer {self.peer.address} is serving as many downloads as it allows; "
                        "try again later"
                    ) from None
            finally:
                stream.cancel()
            time.sleep(_BUSY_WAIT_S)

    def _unary(self, method: str, body: bytes) -> bytes:
        stub: grpc.UnaryUnaryMultiCallable[bytes, bytes] = self._channel.unary_unary(
            method, request_serializer=None, response_deserializer=None
        )
        try:
            raw: bytes = stub(
                body,
                metadata=((AUTH_METADATA_KEY, sign_request(self._identity, method, body)),),
                timeout=self._timeout,
            )
        except grpc.RpcError as err:
            raise status_to_error(err, self.peer.address) from None
        return raw
