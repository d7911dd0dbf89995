"""`python -m federation host|join ...`: what `gridpoint fed ...` runs (node never imports us)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from node.errors import GridpointError
from node.home import resolve_home
from node.output import print_json, stderr


def _parse_params(items: list[str]) -> dict[str, float]:
    params = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            params[name] = float(value)
        except ValueError:
            raise GridpointError(f"--param {item!r}: expected NAME=NUMBER") from None
        if not sep:
            raise GridpointError(f"--param {item!r}: expected NAME=NUMBER")
    return params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gridpoint fed", description="Federated training rounds over Flower."
    )
    parser.add_argument("--home")
    parser.add_argument("--db")
    sub = parser.add_subparsers(dest="command", required=True)
    h = sub.add_parser(
        "host", help="host a federation: SuperLink + ServerApp, then publish the run"
    )
    h.add_argument("--federation", required=True)
    h.add_argument("--study", required=True, type=Path)
    h.add_argument("--rounds", type=int, default=3)
    h.add_argument("--min-members", type=int, default=2)
    h.add_argument(
        "--listen", default="127.0.0.1:0", help="HOST:PORT of the SuperLink (keep it protected)"
    )
    h.add_argument("--lora", action="store_true", help="exchange only LoRA adapters (PEFT)")
    h.add_argument("--strategy", default="fedavg", help="fedavg | fedadam | fedyogi")
    h.add_argument(
        "--round-timeout", type=float, default=600.0, help="seconds to wait for members each round"
    )
    h.add_argument(
        "--param", action="append", default=[], help="NAME=VALUE hyperparameter override"
    )
    h.add_argument("--json", action="store_true")
    j = sub.add_parser("join", help="join a trusted peer's federation with a SuperNode")
    j.add_argument("address", help="the host's SuperLink HOST:PORT")
    j.add_argument("--federation", required=True)
    j.add_argument("--pipeline", required=True, help="MODULE:FUNCTION of this node's private data")
    j.add_argument(
        "--pipeline-dir", type=Path, default=Path.cwd(), help="folder holding the pipeline module"
    )
    j.add_argument(
        "--model-path", default="", help="this node's copy of the base checkpoint, if any"
    )
    j.add_argument(
        "--max-wait", type=float, default=60.0, help="seconds to wait for an absent SuperLink"
    )
    j.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        stderr.print(line, markup=False)

    try:
        home = resolve_home(args.home)
        if args.command == "host":
            from federation.host import HostOptions, run_host
            from federation.publish import publish_federation

            opts = HostOptions(
                federation=args.federation,
                study=args.study,
                rounds=args.rounds,
                min_members=args.min_members,
                listen=args.listen,
                lora=args.lora,
                strategy=args.strategy,
                round_timeout=args.round_timeout,
                params=_parse_params(args.param),
                db=args.db,
                json_output=args.json,
            )
            outcome = run_host(home, opts, say)
            summary = publish_federation(home, opts, outcome)
            say(f"federation {args.federation!r} done; record {summary['record_id']} published")
        else:
            from federation.member import run_member

            summary = run_member(
                home,
                args.address,
                args.federation,
                args.pipeline,
                args.pipeline_dir,
                args.model_path,
                args.db,
                say,
                args.max_wait,
            )
    except GridpointError as exc:
        stderr.print(f"error: {exc}", markup=False)
        return 1
    except KeyboardInterrupt:
        stderr.print("interrupted; Flower processes stopped", markup=False)
        return 130
    if args.json:
        print_json(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
