"""gridpoint's node: the long-lived daemon and the commands around it (internal).

The code is organized in layers, each a subpackage that imports only those below it:

- cli/: the one command line (`gridpoint ...`): parses, calls the layers below, prints;
  one error boundary turns every GridpointError into one line and an exit code.
- tuning/: glue between the node and the trainers: the anonymizer and the warm start's
  choice of priors from the catalog; the only part of node that imports trainers (lazily).
- daemon/: `node start`: the gRPC server, its interceptors and the sync loop.
- peers/: calling trusted peers through a transport seam: pinning peers, sync, live query.
- control/: the owner's control: withdraw (tombstones), the sharing policy and what each
  peer is served under it, key rotation and revocation, the outbound ledger; its gate
  admits records and statements alike.
- catalog.py: the only ways records enter the catalog (publish, admit).
- store/: persistence: the store contract, SQL models, migrations, the filter language.
- protocol/: the wire: identity, TLS, signed envelopes, request auth, serde, RPC errors.
- home.py, config.py, logs.py: the node home on disk, its config file, its log lines.
- demo.py: the main job `./dev demo` runs.

The daemon never imports torch, transformers, optuna or flwr (an import-linter contract);
node never imports gridpoint.federation: `fed` reaches the CLI through an entry point.
"""
