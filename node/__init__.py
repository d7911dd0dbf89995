"""gridpoint's node: the long-lived daemon and the commands around it (internal).

The code is organized in layers, each importing only those below it (import-linter keeps
cli, ui | tuning, daemon | publishing, peers, control, artifacts, store, protocol in this
order):

- cli/: the one command line (`gridpoint ...`): each command parses, calls one service
  function and prints; one error boundary turns every GridpointError into one line.
- ui/: `gridpoint ui` and `gridpoint plot`: read-only pages and charts over the store.
- tuning/: `tune` as a service: the study run on the trainers, its warm start and the
  choice of priors from the catalog; with publishing/anonymize.py, the only part of node
  that imports trainers (lazily, inside the commands that run studies).
- daemon/: `node start`: the gRPC server, its interceptors and the sync loop.
- publishing/: the publishing service, the one way a run becomes a signed record (with its
  private part, in one transaction), and the anonymizer's allowlist.
- peers/: calling trusted peers through a transport seam: pinning peers, sync, live query.
- control/: the owner's control: withdraw (tombstones), the sharing policy and what each
  peer is served under it, key rotation and revocation, the outbound ledger; its gate
  admits records and statements alike.
- artifacts/: models as signed artifacts: kept, served, pulled.
- catalog.py: the only ways records enter the catalog (publish, admit).
- store/: persistence: the store contract, SQL models, migrations, the filter language.
- protocol/: the wire: identity, TLS, signed envelopes, request auth, serde, RPC errors.

Shared by the layers above them:

- record_views.py: what a person is shown of records, alike in the CLI and the UI.
- study_reports.py: the warm-start reports `tune` keeps beside a study; the UI reads them.
- pseudonyms.py: keyed pseudonyms, and the owner's names turned into them in a filter.
- home.py, config.py, logs.py: the node home on disk, its config file, its log lines.
- home_lock.py: which daemon runs on a home (its exclusive lock; what `node status` reads).
- demo.py: the story `python -m gridpoint.node.demo` (and `./dev demo`) runs.

The daemon never imports torch, transformers, optuna or flwr (an import-linter contract);
node never imports gridpoint.federation: `fed` reaches the CLI through an entry point.
"""
