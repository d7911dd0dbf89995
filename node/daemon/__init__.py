"""`gridpoint node start`: the long-lived process that serves peers and pulls from them.

service.py (what a node answers its peers, without gRPC), server.py (the thin gRPC
servicers over it: Hello, Catalog.Sync, .Fetch, .Query, Artifacts, health), interceptors.py
(request authentication, before any servicer), answering.py (how many unary calls are
answered at once, before that), answer_processes.py (child processes answering the catalog's
calls, once authenticated, off the daemon's GIL), run.py (the process: bind, serve, the
periodic sync loop, graceful stop on SIGTERM/SIGINT awaited with sigwait; the home's lock in
node/home_lock.py), schedule.py (when each peer is synced: jitter, per-peer backoff, a cap
on rounds at once; pure, over a clock passed in), sync_loop.py (the periodic sync carrying
out that schedule, a thread per round, a down peer logged once), stop.py (`node stop`: SIGTERM, a bounded wait, SIGKILL).

Must never import the training stack (torch, transformers, optuna, flwr).
"""
