"""The `gridpoint` command line: one parser, one registration style, one error boundary.

Every command group is a module with `register(sub)`, which adds its subcommands and sets
`handler` on each. Groups of packages that node must not import (`fed`, from
gridpoint.federation) are found through the `gridpoint.commands` entry point, so they are
ordinary subcommands of this one parser. Every GridpointError becomes one line on stderr
and exit code 1 (argparse's usage errors exit 2); no traceback reaches the user, not even
when the reader of a pipe goes away (`| head`: exit 141, silently). Heavy work
(tuning, federation) is imported inside its handler, so catalog commands and the daemon
never load torch.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from gridpoint import __version__
from gridpoint.errors import GridpointError
from gridpoint.node.cli.output import stderr
from gridpoint.node.protocol.peer_text import printable

if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["Handler", "build_parser", "main"]

#: What a command's `handler` default is: parsed arguments in, exit code out.
Handler = Callable[[argparse.Namespace], int]
COMMAND_GROUPS = "gridpoint.commands"


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, every group registered."""
    from gridpoint.node.cli import (
        control,
        daemon,
        local,
        model,
        network,
        plot,
        privacy,
        trust,
        tune,
        ui,
    )

    parser = argparse.ArgumentParser(
        prog="gridpoint",
        description="Federated experiment sharing: run a node, share tuning runs, train together.",
    )
    parser.add_argument("--version", action="version", version=f"gridpoint {__version__}")
    parser.add_argument("--home", help="node home directory (default: $GRIDPOINT_HOME)")
    parser.add_argument(
        "--db", help="database URL overriding the config (sqlite:///... or postgresql://...)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in (
        local.register,
        daemon.register,
        network.register,
        tune.register,
        ui.register,
        plot.register,
        model.register,
        privacy.register,
        control.register,  # adds to `catalog` and `identity`: after them
        trust.register,
    ):
        register(sub)
    for entry in sorted(entry_points(group=COMMAND_GROUPS), key=lambda e: e.name):
        entry.load()(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; returns its exit code."""
    # gRPC's C core logs refused TLS handshakes and failed binds on stderr; every such
    # failure is ours to report, in one line. GRPC_VERBOSITY=ERROR brings its logs back.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return int(handler(args))
    except GridpointError as exc:
        # An error can quote a peer or a server: its text never writes escapes to the terminal.
        stderr.print(f"error: {printable(str(exc))}", markup=False)
        return 1
    except KeyboardInterrupt:
        stderr.print("interrupted", markup=False)
        return 130
    except BrokenPipeError:
        # The reader went away (`... --format csv | head`): what it wanted, it has. Later
        # writes (the interpreter's own flush at exit) go nowhere instead of failing again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141  # 128 + SIGPIPE, as a tool the pipe's signal ended


if __name__ == "__main__":
    sys.exit(main())
