"""A gRPC server that answers every call with the same bytes: the floor under a live answer.

Started by `bench/query_load.py --floor` beside the real daemon. It listens with the daemon's
mutual TLS, thread pool and message limits (node/daemon/server.py), and answers each call
with a live answer captured from the real daemon (the same size, limit 100), doing nothing
else: no authentication, no query, no ledger. What it sustains under the same 1,000 calls at
once is what any answer costs on this machine before gridpoint does its own work, so it
bounds what the daemon can reach. With --aio it is gRPC's asyncio server instead.

    python bench/answer_floor.py DIR [--aio] [--max-calls N] [--max-message-bytes N]

DIR holds server.key, server.crt, client.crt (the asking node's certificate, trusted) and
answer.bin. Prints `listening on HOST:PORT` and serves until killed. A benchmark tool, never
part of the node.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gridpoint.node.config import SecurityConfig  # noqa: E402
from gridpoint.node.daemon.server import WORKERS  # noqa: E402

#: What DIR must hold.
FILES = ("server.key", "server.crt", "client.crt", "answer.bin")


def _credentials(folder: Path) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [((folder / "server.key").read_bytes(), (folder / "server.crt").read_bytes())],
        root_certificates=(folder / "client.crt").read_bytes(),
        require_client_auth=True,
    )


def _options(limits: SecurityConfig) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", limits.max_message_bytes),
        ("grpc.max_send_message_length", limits.max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]


def _handler(answer: bytes, *, aio: bool) -> grpc.GenericRpcHandler:
    if aio:

        async def reply_async(request: bytes, context: Any) -> bytes:
            return answer

        method = grpc.unary_unary_rpc_method_handler(reply_async)
    else:

        def reply(request: bytes, context: grpc.ServicerContext) -> bytes:
            return answer

        method = grpc.unary_unary_rpc_method_handler(reply)

    class Every(grpc.GenericRpcHandler):
        def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any]:
            return method

    return Every()


def serve_threads(folder: Path, limits: SecurityConfig) -> None:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=WORKERS),
        options=_options(limits),
        maximum_concurrent_rpcs=limits.max_concurrent_calls,
    )
    server.add_generic_rpc_handlers((_handler((folder / "answer.bin").read_bytes(), aio=False),))
    port = server.add_secure_port("127.0.0.1:0", _credentials(folder))
    server.start()
    print(f"listening on 127.0.0.1:{port}", flush=True)
    server.wait_for_termination()


async def serve_aio(folder: Path, limits: SecurityConfig) -> None:
    server = grpc.aio.server(
        options=_options(limits), maximum_concurrent_rpcs=limits.max_concurrent_calls
    )
    server.add_generic_rpc_handlers((_handler((folder / "answer.bin").read_bytes(), aio=True),))
    port = server.add_secure_port("127.0.0.1:0", _credentials(folder))
    await server.start()
    print(f"listening on 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--aio", action="store_true")
    defaults = SecurityConfig()
    parser.add_argument("--max-calls", type=int, default=defaults.max_concurrent_calls)
    parser.add_argument("--max-message-bytes", type=int, default=defaults.max_message_bytes)
    args = parser.parse_args()
    missing = [n for n in FILES if not (args.folder / n).is_file()]
    if missing:
        parser.error(
            f"{args.folder} has no {', '.join(missing)}: bench/query_load.py --floor writes them"
        )
    limits = SecurityConfig(
        max_message_bytes=args.max_message_bytes, max_concurrent_calls=args.max_calls
    )
    if args.aio:
        asyncio.run(serve_aio(args.folder, limits))
    else:
        serve_threads(args.folder, limits)


if __name__ == "__main__":
    main()
