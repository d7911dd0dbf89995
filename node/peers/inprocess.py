"""An in-process peer transport: the peer's service is called directly, no socket.

Like httpx's MockTransport, it lets everything above the transport (sync, live query, the
artifact pull, refusals) run in a unit test against a real peer service and store: requests
are still signed and authenticated over their exact bytes, errors still pass through the
status mapping a gRPC caller would see, and an answer over the message limit is refused as
gRPC refuses it. A stream's answers are produced on a thread of their own and handed over
one at a time, so a reader that stops reading holds the producer back, as flow control does
on the wire, and a peer that goes silent meets the same idle timeout. What it leaves out is
TLS and the network.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

import grpc

from gridpoint.errors import GridpointError, PeerUnavailable
from gridpoint.node.peers.transport import IDLE_TIMEOUT_S, MessageStream, PeerTransport
from gridpoint.node.protocol.identity import NodeIdentity
from gridpoint.node.protocol.rpc_errors import error_for_status, status_for

__all__ = ["Handler", "InProcessTransport", "StreamHandler"]

#: A peer's whole call: (method, raw request, request auth, caller's TLS name) -> raw answer.
Handler = Callable[[str, bytes, bytes | None, str | None], bytes]
#: The same for a method that answers with a stream of raw messages.
StreamHandler = Callable[[str, bytes, bytes | None, str | None], Iterator[bytes]]
# How often a blocked side looks whether the other cancelled.
_POLL_S = 0.02


class InProcessTransport(PeerTransport):
    """Calls a peer's handlers (e.g. NodeService.handle and .handle_stream) as this identity."""

    def __init__(
        self,
        identity: NodeIdentity,
        address: str,
        peer_node_id: str,
        handler: Handler,
        stream_handler: StreamHandler | None = None,
        *,
        max_message_bytes: int = 4 * 1024 * 1024,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
    ) -> None:
        super().__init__(identity, address, peer_node_id, idle_timeout_s=idle_timeout_s)
        self._handler = handler
        self._stream_handler = stream_handler
        self._max_bytes = max_message_bytes

    def close(self) -> None:
        """Nothing to release: no channel, no socket."""

    def round_trip(self, method: str, body: bytes, auth: bytes) -> bytes:
        try:
            raw = self._handler(method, body, auth, self._identity.node_id)
        except GridpointError as exc:
            raise self.as_status(exc) from None
        return self.checked_size(raw)

    def open_stream(self, method: str, body: bytes, auth: bytes) -> MessageStream:
        if self._stream_handler is None:
            raise self.as_status(GridpointError(f"{method} is not served here"))
        handler = self._stream_handler

        def answers() -> Iterator[bytes]:
            return handler(method, body, auth, self._identity.node_id)

        return _Pump(self, answers)

    def as_status(self, exc: GridpointError) -> GridpointError:
        """The error a gRPC caller would see for what the peer raised."""
        return error_for_status(status_for(exc), str(exc), self.address)

    def checked_size(self, raw: bytes) -> bytes:
        """raw, or the error gRPC gives for an answer over the message limit."""
        if len(raw) > self._max_bytes:
            raise error_for_status(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"Received message larger than max ({len(raw)} vs. {self._max_bytes})",
                self.address,
            )
        return raw


class _Pump(MessageStream):
    """Runs a stream handler on its own thread, handing its answers over one at a time."""

    def __init__(self, transport: InProcessTransport, answers: Callable[[], Iterator[bytes]]):
        self._transport = transport
        self._handover: queue.Queue[tuple[bytes | None, BaseException | None]] = queue.Queue(1)
        self._cancelled = threading.Event()
        self._thread = threading.Thread(
            target=self._produce, args=(answers,), name="gridpoint-inprocess-stream", daemon=True
        )
        self._thread.start()

    def _produce(self, answers: Callable[[], Iterator[bytes]]) -> None:
        stream: Iterator[bytes] | None = None
        try:
            stream = answers()
            for raw in stream:
                if not self._put((raw, None)):
                    return
            self._put((None, None))
        except GridpointError as exc:
            self._put((None, self._transport.as_status(exc)))
        except Exception as exc:  # like unary calls here: a surprise reaches the caller as is
            self._put((None, exc))
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()

    def _put(self, item: tuple[bytes | None, BaseException | None]) -> bool:
        while not self._cancelled.is_set():
            try:
                self._handover.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def __next__(self) -> bytes:
        while not self._cancelled.is_set():
            try:
                raw, error = self._handover.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if error is not None:
                raise error
            if raw is None:
                raise StopIteration
            return self._transport.checked_size(raw)
        raise PeerUnavailable(f"peer {self._transport.address}: the call was cancelled")

    def cancel(self) -> None:
        self._cancelled.set()
