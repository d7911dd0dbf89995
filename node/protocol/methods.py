"""The full names of the gridpoint.v1 methods, as signed in every request (see node.proto)."""

__all__ = ["HELLO", "QUERY", "SYNC"]

HELLO = "/gridpoint.v1.Node/Hello"
SYNC = "/gridpoint.v1.Catalog/Sync"
QUERY = "/gridpoint.v1.Catalog/Query"
