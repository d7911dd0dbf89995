"""`gridpoint node start`: the long-lived process that serves peers and pulls from them.

service.py (what a node answers its peers, without gRPC), server.py (the thin gRPC
servicers over it: Hello, Catalog.Sync, Catalog.Query, Artifacts, health), interceptors.py
(request authentication, before any servicer), run.py (the process: bind, serve, the
periodic sync loop, graceful stop), state.py (the home's lock: one daemon per home; what
`node status` reads).

Must never import the training stack (torch, transformers, optuna, flwr).
"""
