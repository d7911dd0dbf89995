"""`gridpoint node start`: the long-lived process that serves peers and pulls from them.

server.py (the gRPC servicers: Hello, Catalog.Sync, Catalog.Query, health),
interceptors.py (request authentication, before any servicer), run.py (the process: bind,
serve, the periodic sync loop, graceful stop on SIGTERM/SIGINT awaited with sigwait),
service.py (what a node answers, without gRPC), state.py (the home's lock: one daemon per
home; what `node status` reads), stop.py (`node stop`: SIGTERM, a bounded wait, SIGKILL).

Must never import the training stack (torch, transformers, optuna, flwr).
"""
