"""The full names of the gridpoint.v1 methods, as signed in every request: the one place
they are written. Each is read from the generated service descriptors, so a name here can
never drift from the .proto files (a renamed method fails at import, not on the wire).
"""

from __future__ import annotations

from google.protobuf.descriptor import FileDescriptor

from gridpoint.v1 import artifacts_pb2, catalog_pb2, node_pb2

__all__ = [
    "ARTIFACTS_DOWNLOAD",
    "ARTIFACTS_GET_MANIFEST",
    "ARTIFACTS_LIST",
    "FETCH",
    "HELLO",
    "QUERY",
    "SYNC",
]


def _path(file: FileDescriptor, service: str, method: str) -> str:
    """The gRPC path of a method ("/package.Service/Method") the descriptor declares."""
    full = file.services_by_name[service].methods_by_name[method].full_name
    return "/" + full.rsplit(".", 1)[0] + "/" + method


HELLO = _path(node_pb2.DESCRIPTOR, "Node", "Hello")
SYNC = _path(catalog_pb2.DESCRIPTOR, "Catalog", "Sync")
QUERY = _path(catalog_pb2.DESCRIPTOR, "Catalog", "Query")
FETCH = _path(catalog_pb2.DESCRIPTOR, "Catalog", "Fetch")
ARTIFACTS_LIST = _path(artifacts_pb2.DESCRIPTOR, "Artifacts", "List")
ARTIFACTS_GET_MANIFEST = _path(artifacts_pb2.DESCRIPTOR, "Artifacts", "GetManifest")
ARTIFACTS_DOWNLOAD = _path(artifacts_pb2.DESCRIPTOR, "Artifacts", "Download")
