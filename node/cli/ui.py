"""`gridpoint ui`: the read-only web UI over this node's store (see gridpoint.node.ui)."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from gridpoint.errors import ConfigError
from gridpoint.node.cli.output import print_line
from gridpoint.node.home import resolve_home

if TYPE_CHECKING:
    from gridpoint.node.cli.main import SubParsers

__all__ = ["register"]

TOKEN_ENV = "GRIDPOINT_UI_TOKEN"


def cmd_ui(args: argparse.Namespace) -> int:
    try:
        from gridpoint.node.ui.serve import serve
    except ImportError as exc:
        raise ConfigError(
            f"gridpoint ui needs the `ui` extra ({exc.name} is missing): "
            "pip install 'gridpoint[ui]'"
        ) from exc

    home = resolve_home(args.home)
    home.check()
    serve(
        home,
        home.db_url(args.db),
        args.listen,
        token=os.environ.get(TOKEN_ENV) or None,
        say=print_line,
    )
    return 0


def register(sub: SubParsers) -> None:
    """Adds `ui`."""
    p = sub.add_parser(
        "ui",
        help="serve a read-only web UI over this node's catalog, studies and federations",
        description=(
            "Serves the catalog, records, comparisons, studies and federations of this node, "
            "read-only. On loopback (the default) anyone on this machine may open it; any other "
            f"address requires a token, printed at start (or taken from ${TOKEN_ENV})."
        ),
    )
    p.add_argument(
        "--listen",
        default="127.0.0.1:8765",
        help="HOST:PORT to serve on (default 127.0.0.1:8765; port 0 picks one)",
    )
    p.set_defaults(handler=cmd_ui)
