"""The `gridpoint` command line: one parser, one registration style, one error boundary.

main.py (the parser, the boundary, the node commands), network.py (node start, peer,
catalog), tune.py (`tune`), control.py (`catalog withdraw`, `identity rotate|revoke`,
`policy`, `audit`), output.py (printing). Command groups of other packages
(`fed`) register through the `gridpoint.commands` entry point.
"""
