"""`gridpoint node start`: the long-lived process that serves peers and pulls from them.

server.py (the gRPC servicers: Hello, Catalog.Sync, Catalog.Query, health),
interceptors.py (request authentication, before any servicer), run.py (the process: bind,
serve, the periodic sync loop, graceful stop).

Must never import the training stack (torch, transformers, optuna, flwr).
"""
