"""`gridpoint fed host|join`: the federation's command group, registered through an entry point.

node's CLI finds `register` under the `gridpoint.commands` entry point, so `fed` is an
ordinary subcommand of the one parser (one --help, one error boundary) although node never
imports this package.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from gridpoint.errors import ConfigError
from gridpoint.node.cli.output import print_json, stderr
from gridpoint.node.home import resolve_home

if TYPE_CHECKING:
    from gridpoint.node.cli.main import SubParsers

__all__ = ["register"]


def _say(line: str) -> None:
    stderr.print(line, markup=False)


def parse_params(items: list[str]) -> dict[str, float]:
    """`--param NAME=NUMBER` values as a mapping; ConfigError names a malformed one."""
    params = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            params[name] = float(value)
        except ValueError:
            raise ConfigError(f"--param {item!r}: expected NAME=NUMBER") from None
        if not sep or not name:
            raise ConfigError(f"--param {item!r}: expected NAME=NUMBER")
    return params


def cmd_fed_host(args: argparse.Namespace) -> int:
    from gridpoint.federation.global_model import keep_global_model
    from gridpoint.federation.host import HostOptions, resume_options, run_host
    from gridpoint.federation.publish import publish_federation

    home = resolve_home(args.home)
    resume_from = None
    if args.resume:
        opts, resume_from = resume_options(home, args.resume)
    elif not args.federation or not args.study:
        raise ConfigError("fed host needs --federation and --study (or --resume FEDERATION)")
    else:
        opts = HostOptions(
            federation=args.federation,
            study=args.study,
            rounds=args.rounds,
            min_members=args.min_members,
            listen=args.listen,
            lora=args.lora,
            strategy=args.strategy,
            round_timeout=args.round_timeout,
            params=parse_params(args.param),
            db=args.db,
            from_best_trial=args.from_best_trial,
            secure_aggregation=args.secure_aggregation,
            dp=args.dp,
            dp_epsilon=args.dp_epsilon,
            dp_delta=args.dp_delta,
            dp_clip=args.dp_clip,
            dp_adaptive_clip=args.dp_adaptive_clip,
        )
    outcome = run_host(home, opts, _say, resume_from, fork_serverapp=not args.cold_serverapp)
    summary = publish_federation(home, opts, outcome)
    _say(f"federation {opts.federation!r} done; record {summary.record_id} published")
    model = keep_global_model(
        home,
        args.db,
        outcome.result.model_dir,
        federation=opts.federation,
        record_id=summary.record_id,
        base_model=summary.base_model,
        members=summary.members,
    )
    _say(
        f"kept the final global model {model.id[:12]}; its {len(summary.members)} member(s) may fetch it"
    )
    if args.json:
        print_json({**summary.as_json(), "model": model.id})
    return 0


def cmd_fed_join(args: argparse.Namespace) -> int:
    from gridpoint.federation.member import run_member

    home = resolve_home(args.home)
    summary = run_member(
        home,
        args.address,
        args.federation,
        args.pipeline,
        args.pipeline_dir,
        args.model_path,
        args.db,
        _say,
        args.max_wait,
        fork_clientapps=not args.cold_clientapps,
    )
    if args.json:
        print_json(summary)
    return 0


def register(sub: SubParsers) -> None:
    """Adds `fed host` and `fed join`."""
    fed = sub.add_parser(
        "fed",
        help="federated training over Flower: `fed host ...` or `fed join ADDRESS ...`",
        description="Train one model together with trusted peers over a real Flower deployment.",
    ).add_subparsers(dest="fed_command", required=True, metavar="COMMAND")
    defaults = argparse.ArgumentDefaultsHelpFormatter
    h = fed.add_parser(
        "host",
        help="host a federation: SuperLink + ServerApp, then publish the run",
        formatter_class=defaults,
    )
    h.add_argument("--federation", help="the federation's name (members give it too)")
    h.add_argument("--study", type=Path, help="study file: model, task, objective")
    h.add_argument(
        "--resume",
        metavar="FEDERATION",
        help="continue this node's last run of FEDERATION from its last completed round "
        "(after a crash or kill), with the options it was started with",
    )
    h.add_argument("--rounds", type=int, default=3, help="federated rounds")
    h.add_argument(
        "--min-members",
        type=int,
        default=2,
        help="members to start with; each later round waits up to --round-timeout for as many",
    )
    h.add_argument(
        "--listen", default="127.0.0.1:0", help="HOST:PORT of the SuperLink (keep it protected)"
    )
    h.add_argument("--lora", action="store_true", help="exchange only LoRA adapters (PEFT)")
    h.add_argument(
        "--strategy", default="fedavg", choices=("fedavg", "fedadam", "fedyogi"), help="aggregation"
    )
    h.add_argument(
        "--round-timeout", type=float, default=600.0, help="seconds to wait for members each round"
    )
    h.add_argument(
        "--param", action="append", default=[], help="NAME=VALUE hyperparameter override"
    )
    h.add_argument(
        "--from-best-trial",
        action="store_true",
        help="use the hyperparameters of the study's best trial on this node (--param still overrides)",
    )
    h.add_argument(
        "--secure-aggregation",
        action="store_true",
        help="Flower's SecAgg+: the host learns only the members' weighted sum, never one "
        "member's update; members still sign every message (FedAvg only, 2 members at least)",
    )
    h.add_argument(
        "--dp",
        action="store_true",
        help="DP-FedAvg: members clip their updates, the host adds Gaussian noise; the "
        "member-level epsilon is accounted, charged to the ledger first and published",
    )
    h.add_argument(
        "--dp-epsilon", type=float, default=8.0, help="with --dp: epsilon over all rounds"
    )
    h.add_argument("--dp-delta", type=float, default=1e-5, help="with --dp: delta")
    h.add_argument(
        "--dp-clip", type=float, default=1.0, help="with --dp: L2 norm of each member's update"
    )
    h.add_argument(
        "--dp-adaptive-clip",
        action="store_true",
        help="with --dp: the clip starts at --dp-clip and follows the median of the members' "
        "update norms (Andrew et al. 2021; its noisy count takes a share of the budget); not "
        "with --secure-aggregation",
    )
    h.add_argument(
        "--cold-serverapp",
        action="store_true",
        help="start the run's ServerApp as Flower does, importing everything again, rather "
        "than forked from a process that imported it while the SuperLink started",
    )
    h.add_argument("--json", action="store_true", help="print JSON")
    h.set_defaults(handler=cmd_fed_host)
    j = fed.add_parser(
        "join", help="join a trusted peer's federation with a SuperNode", formatter_class=defaults
    )
    j.add_argument("address", help="the host's SuperLink HOST:PORT")
    j.add_argument("--federation", required=True, help="the federation's name, as the host gave it")
    j.add_argument("--pipeline", required=True, help="MODULE:FUNCTION of this node's private data")
    j.add_argument(
        "--pipeline-dir", type=Path, default=Path.cwd(), help="folder holding the pipeline module"
    )
    j.add_argument("--model-path", default="", help="this node's copy of the base checkpoint")
    j.add_argument(
        "--max-wait", type=float, default=60.0, help="seconds to wait for an absent SuperLink"
    )
    j.add_argument(
        "--cold-clientapps",
        action="store_true",
        help="start each message's ClientApp as Flower does, importing everything again, "
        "rather than forked from one process that imported it once",
    )
    j.add_argument("--json", action="store_true", help="print JSON")
    j.set_defaults(handler=cmd_fed_join)
