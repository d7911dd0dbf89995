"""`gridpoint model list|show|export|remove|pull|share`: the models this node holds.

Ids accept a unique prefix everywhere. Prints data only: a model's group (the study or
federation it came from) is shown to the node's own user, never sent anywhere.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gridpoint.node.cli.output import print_json, print_line, print_table
from gridpoint.node.home import resolve_home

if TYPE_CHECKING:
    from gridpoint.node.artifacts.store import Artifact, ArtifactStore
    from gridpoint.node.cli.main import SubParsers
    from gridpoint.node.home import NodeHome
    from gridpoint.node.store.base import CatalogStore

__all__ = ["artifact_json", "register"]


def _open(args: argparse.Namespace) -> tuple[NodeHome, CatalogStore, ArtifactStore]:
    from gridpoint.node.artifacts.store import ArtifactStore
    from gridpoint.node.store.sql_store import open_store

    home = resolve_home(args.home)
    store = open_store(home.db_url(args.db))
    try:
        return home, store, ArtifactStore(home, store)
    except BaseException:
        store.close()
        raise


def artifact_json(artifact: Artifact, *, detail: bool = False) -> dict[str, Any]:
    """A model as JSON: the list's fields, and with detail every file's digest."""
    out: dict[str, Any] = {
        "id": artifact.id,
        "record": artifact.record_id,
        "kind": artifact.kind,
        "method": artifact.method,
        "base_model": artifact.base_model,
        "group": artifact.group,
        "score": artifact.score,
        "author": artifact.author,
        "readers": list(artifact.readers),
        "files": len(artifact.files),
        "bytes": artifact.bytes,
        "created_at": artifact.created_at.isoformat(),
    }
    if detail:
        out["files"] = [
            {"path": f.path, "bytes": f.size, "sha256": f.sha256} for f in artifact.files
        ]
    return out


def cmd_list(args: argparse.Namespace) -> int:
    _home, store, artifacts = _open(args)
    try:
        held = artifacts.list()
    finally:
        store.close()
    if args.json:
        print_json([artifact_json(a) for a in held])
        return 0
    # Narrow enough for 80 columns: `model show ID` has the record, files and digests.
    print_table(
        f"{len(held)} models",
        ["id", "kind", "method", "size", "score", "study / federation", "base model"],
        [
            [
                a.id[:12],
                a.kind,
                a.method,
                f"{a.bytes / 1e6:.1f} MB",
                "-" if a.score is None else f"{a.score:.4g}",
                a.group or "-",
                a.base_model or "-",
            ]
            for a in held
        ],
        numeric=(3, 4),
        whole=(0, 1, 2, 3),
    )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    _home, store, artifacts = _open(args)
    try:
        artifact = artifacts.get(args.id)
        lineage = _lineage(store, artifact.record_id)
    finally:
        store.close()
    data = artifact_json(artifact, detail=True) | {"lineage": lineage}
    if args.json:
        print_json(data)
        return 0
    for key in ("id", "kind", "method", "base_model", "record", "author", "group", "score"):
        print_line(f"{key:11} {data[key] if data[key] not in (None, '') else '-'}")
    print_line(f"{'readers':11} {', '.join(artifact.readers) or '(private)'}")
    print_line(f"{'lineage':11} {' <- '.join(lineage) or '-'}")
    print_table(
        f"{len(artifact.files)} files, {artifact.bytes} bytes",
        ["path", "bytes", "sha256"],
        [[f.path, f.size, f.sha256] for f in artifact.files],
        numeric=(1,),
    )
    return 0


#: How many generations of parents `model show` follows.
_MAX_LINEAGE = 32


def _lineage(store: CatalogStore, record_id: str | None) -> list[str]:
    """The record and its first parents, as far as this node's catalog knows them."""
    chain: list[str] = []
    while record_id and record_id not in chain and len(chain) < _MAX_LINEAGE:
        chain.append(record_id)
        found = store.get_record(record_id)
        record_id = found.record.parents[0] if found and found.record.parents else None
    return chain


def cmd_export(args: argparse.Namespace) -> int:
    _home, store, artifacts = _open(args)
    try:
        artifact = artifacts.get(args.id)
        dest = artifacts.export(artifact.id, Path(args.dir).expanduser())
    finally:
        store.close()
    if args.json:
        print_json({"id": artifact.id, "path": str(dest)})
        return 0
    print_line(f"exported to {dest} (load it with from_pretrained)")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    _home, store, artifacts = _open(args)
    try:
        artifact = artifacts.get(args.id)
        artifacts.remove(artifact.id)
    finally:
        store.close()
    if args.json:
        print_json({"id": artifact.id, "removed": True, "bytes": artifact.bytes})
        return 0
    print_line(f"removed model {artifact.id[:12]} ({artifact.bytes} bytes freed)")
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from gridpoint.node.peers.artifact_pull import pull

    home, store, _artifacts = _open(args)
    try:
        pulled = pull(home, store, args.id, args.source)
    finally:
        store.close()
    artifact = pulled.artifact
    if args.json:
        print_json({**artifact_json(artifact), "fetched": pulled.fetched})
        return 0
    done = "pulled model" if pulled.fetched else "already on this node: model"
    print_line(f"{done} {artifact.id[:12]}: {len(artifact.files)} files, {artifact.bytes} bytes")
    return 0


def cmd_share(args: argparse.Namespace) -> int:
    _home, store, artifacts = _open(args)
    try:
        artifact = artifacts.share(args.id, args.node)
    finally:
        store.close()
    if args.json:
        print_json(artifact_json(artifact))
        return 0
    print_line(f"model {artifact.id[:12]} may now be fetched by {', '.join(artifact.readers)}")
    return 0


def register(sub: SubParsers) -> None:
    """Adds `model` and its subcommands to the top-level parser."""
    model = sub.add_parser("model", help="models kept by tune and fed, shared with peers")
    cmds = model.add_subparsers(dest="model_command", required=True, metavar="COMMAND")
    p = cmds.add_parser("list", help="list the models this node holds")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_list)
    p = cmds.add_parser("show", help="a model's record, lineage, files, digests and readers")
    p.add_argument("id", help="model id or unique prefix")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_show)
    p = cmds.add_parser("export", help="copy a model to a folder from_pretrained loads")
    p.add_argument("id", help="model id or unique prefix")
    p.add_argument("dir", help="destination folder (new or empty)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_export)
    p = cmds.add_parser("remove", help="delete a model from this node")
    p.add_argument("id", help="model id or unique prefix")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_remove)
    p = cmds.add_parser("pull", help="fetch a model from a trusted peer (verified, resumable)")
    p.add_argument("id", help="model id or unique prefix")
    p.add_argument(
        "--from", dest="source", metavar="NODE_ID", help="the peer to fetch from (default: any)"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_pull)
    p = cmds.add_parser("share", help="let a peer fetch a model from this node")
    p.add_argument("id", help="model id or unique prefix")
    p.add_argument("--with", dest="node", required=True, metavar="NODE_ID", help="the peer")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_share)
