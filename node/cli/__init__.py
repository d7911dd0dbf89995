"""The `gridpoint` command line: one parser, one registration style, one error boundary.

The code is organized as follows (each command group a module with `register(sub)`):

- main.py: the parser and the one error boundary (a GridpointError is one line, exit 1).
- local.py: `init`, `identity`, `publish` (through the publishing service).
- daemon.py: `node start`, `node status`.
- network.py: `peer ...`, `catalog sync|query|show`.
- tune.py: `tune` (one call to the tune service, node/tuning/study_run.py).
- model.py: `model list|show|export|remove|pull|share`.
- control.py: `catalog withdraw`, `identity rotate|revoke`, `policy`, `audit` (the owner's
  control).
- privacy.py: `privacy ledger` (the budget ledger of private pipelines).
- trust.py: `trust vouch|unvouch|list` (introductions).
- ui.py, plot.py: `gridpoint ui` and `gridpoint plot` (over node/ui/).
- output.py: printing tables, JSON and one-line messages.

Each command parses, calls one service function and prints. Command groups of other
packages (`fed`, `import`) register through the `gridpoint.commands` entry point.
"""
