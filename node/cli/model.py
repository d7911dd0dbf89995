"""`gridpoint model ...`: the models this node holds, its model registry, signed exports.

list, show, export, verify, remove, pull, share; register, deregister and alias for the
registry (node/artifacts/registry.py). Ids accept a unique prefix everywhere, and where a
model is read (show, export) a registry reference too: NAME@ALIAS, NAME@VERSION, NAME@latest.
Prints data only: a model's group (the study or federation it came from) and its registered
names are shown to the node's own user, never sent anywhere.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gridpoint.node.cli.output import print_json, print_line, print_table, timestamp
from gridpoint.node.home import resolve_home

if TYPE_CHECKING:
    from gridpoint.node.artifacts.registry import AliasChange, ModelVersion, Registry
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


def _registry(home: NodeHome, store: CatalogStore, artifacts: ArtifactStore) -> Registry:
    from gridpoint.node.artifacts.registry import Registry
    from gridpoint.node.store.sql_store import SqlStore

    assert isinstance(store, SqlStore)  # ArtifactStore refused any other
    return Registry(artifacts, store, home.config.registry, home.identity.node_id)


def artifact_json(
    artifact: Artifact, *, detail: bool = False, versions: Sequence[ModelVersion] = ()
) -> dict[str, Any]:
    """A model as JSON: the list's fields, its registered versions, and with detail every
    file's digest."""
    out: dict[str, Any] = {
        "id": artifact.id,
        "record": artifact.record_id,
        "kind": artifact.kind,
        "method": artifact.method,
        "base_model": artifact.base_model,
        "group": artifact.group,
        "score": artifact.score,
        "metric": artifact.metric or None,
        "versions": [
            {"name": v.name, "version": v.version, "aliases": list(v.aliases)} for v in versions
        ],
        "author": artifact.author,
        "readers": list(artifact.readers),
        "files": len(artifact.files),
        "bytes": artifact.bytes,
        "created_at": timestamp(artifact.created_at),
    }
    if detail:
        out["files"] = [
            {"path": f.path, "bytes": f.size, "sha256": f.sha256} for f in artifact.files
        ]
    return out


def _score(artifact: Artifact) -> str:
    """The score with the metric it measures (models kept before metrics were recorded: '?')."""
    if artifact.score is None:
        return "-"
    return f"{artifact.metric or '?'} {artifact.score:.4g}"


def cmd_list(args: argparse.Namespace) -> int:
    home, store, artifacts = _open(args)
    try:
        held = artifacts.list()
        versions = _registry(home, store, artifacts).versions(args.name, held=held)
    finally:
        store.close()
    if args.name:
        return _list_versions(args, versions)
    by_artifact: dict[str, list[ModelVersion]] = {}
    for v in versions:
        by_artifact.setdefault(v.artifact.id, []).append(v)
    if args.json:
        print_json([artifact_json(a, versions=by_artifact.get(a.id, ())) for a in held])
        return 0
    if versions:
        names: dict[str, list[ModelVersion]] = {}
        for v in versions:
            names.setdefault(v.name, []).append(v)
        # One row per name (`model list NAME` has every version): thousands of versions
        # stay a short table.
        print_table(
            f"{len(names)} registered model{'s' * (len(names) != 1)} ({len(versions)} "
            f"version{'s' * (len(versions) != 1)})",
            ["name", "versions", "aliases", "latest", "id", "score"],
            [
                [
                    name,
                    len(of),
                    ", ".join(f"{a}: {v.version}" for v in of for a in v.aliases) or "-",
                    of[-1].version,
                    of[-1].artifact.id[:12],
                    _score(of[-1].artifact),
                ]
                for name, of in names.items()
            ],
            numeric=(1, 3),
            whole=(1, 3, 4),
        )
    others = [a for a in held if a.id not in by_artifact]
    if versions and not others:
        return 0
    # Narrow enough for 80 columns: `model show ID` has the record, files and digests.
    print_table(
        f"{len(others)} models" + (" not registered" if versions else ""),
        ["id", "kind", "method", "size", "score", "study / federation", "base model"],
        [
            [
                a.id[:12],
                a.kind,
                a.method,
                f"{a.bytes / 1e6:.1f} MB",
                _score(a),
                a.group or "-",
                a.base_model or "-",
            ]
            for a in others
        ],
        numeric=(3,),
        whole=(0, 1, 2, 3),
    )
    return 0


def _list_versions(args: argparse.Namespace, versions: Sequence[ModelVersion]) -> int:
    if args.json:
        print_json(
            [
                _version_json(v) | {"created_at": v.created_at.isoformat()}
                | artifact_json(v.artifact, versions=[v])
                for v in versions
            ]
        )  # fmt: skip
        return 0
    print_table(
        f"{args.name}: {len(versions)} version{'s' * (len(versions) != 1)}",
        ["version", "aliases", "id", "kind", "score", "registered"],
        [
            [
                v.version,
                ", ".join(v.aliases) or "-",
                v.artifact.id[:12],
                v.artifact.kind,
                _score(v.artifact),
                v.created_at.strftime("%Y-%m-%d %H:%M"),
            ]
            for v in versions
        ],
        numeric=(0,),
        whole=(0, 2, 3),
    )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    home, store, artifacts = _open(args)
    try:
        registry = _registry(home, store, artifacts)
        artifact = registry.artifact(args.id)
        versions = registry.versions_of(artifact)
        lineage = _lineage(store, artifact.record_id)
    finally:
        store.close()
    data = artifact_json(artifact, detail=True, versions=versions) | {"lineage": lineage}
    if args.json:
        print_json(data)
        return 0
    for key in ("id", "kind", "method", "base_model", "record", "author", "group"):
        print_line(f"{key:11} {data[key] if data[key] not in (None, '') else '-'}")
    print_line(f"{'score':11} {_score(artifact)}")
    registered = [
        f"{v.ref}" + (f" ({', '.join(v.aliases)})" if v.aliases else "") for v in versions
    ]
    print_line(f"{'registered':11} {', '.join(registered) or '-'}")
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
    from gridpoint.node.artifacts.export import export_model
    from gridpoint.node.artifacts.model_signature import PUBLIC_KEY_FILE, SIGNATURE_FILE

    home, store, artifacts = _open(args)
    try:
        registry = _registry(home, store, artifacts)
        done = export_model(home, artifacts, registry, args.id, Path(args.dir).expanduser())
    finally:
        store.close()
    if args.json:
        print_json(
            {
                "id": done.artifact.id,
                "version": done.ref,
                "path": str(done.path),
                "signature": str(done.path / SIGNATURE_FILE),
                "signer": home.identity.node_id,
            }
        )
        return 0
    print_line(
        f"exported {done.ref or done.artifact.id[:12]} to {done.path} "
        "(load it with from_pretrained), signed in the OpenSSF model-signing format; check it "
        f"with `gridpoint model verify {done.path}` or `model_signing verify key {done.path} "
        f"--signature {done.path / SIGNATURE_FILE} --public_key {done.path / PUBLIC_KEY_FILE}`"
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from gridpoint.node.artifacts.model_signature import verify_folder

    folder = Path(args.dir).expanduser()
    verified = verify_folder(folder)
    signer_name = _known_signer(args, verified.signer)
    if args.json:
        print_json(
            {"path": str(folder), "signer": verified.signer, "signer_name": signer_name,
             "files": verified.files, "verified": True}
        )  # fmt: skip
        return 0
    print_line(
        f"{folder}: {verified.files} files match the model-signing signature; its key is "
        f"bound to node {verified.signer} ({signer_name})"
    )
    return 0


def _known_signer(args: argparse.Namespace, signer: str) -> str:
    """Who the signer is to us: the node --signer names, this node, or a trusted peer."""
    from gridpoint.errors import SignatureInvalid
    from gridpoint.node.store.sql_store import open_store

    if args.signer:
        if not signer.startswith(args.signer.lower()) or len(args.signer) < 8:
            raise SignatureInvalid(
                f"signed by node {signer}, not by {args.signer[:40]} (--signer, at least "
                "8 hex digits of a node id)"
            )
        return "as expected"
    if not (args.home or os.environ.get("GRIDPOINT_HOME")):
        raise SignatureInvalid(
            f"the signature is intact, but its signer {signer[:12]} is not known here: pass "
            "--signer NODE_ID, or --home of a node that trusts it"
        )
    home = resolve_home(args.home)
    if signer == home.identity.node_id:
        return "this node"
    store = open_store(home.db_url(args.db))
    try:
        peer = next((p for p in store.list_peers() if p.node_id == signer), None)
    finally:
        store.close()
    if peer is None:
        raise SignatureInvalid(
            f"the signature is intact, but its signer {signer[:12]} is neither this node nor "
            "a trusted peer (pass --signer NODE_ID if you know it)"
        )
    return f"trusted peer {peer.name}"


def cmd_register(args: argparse.Namespace) -> int:
    home, store, artifacts = _open(args)
    try:
        version, created = _registry(home, store, artifacts).register(args.name, args.id)
    finally:
        store.close()
    if args.json:
        print_json(_version_json(version) | {"created": created})
        return 0
    verb = "registered" if created else "already registered:"
    print_line(f"{verb} model {version.artifact.id[:12]} as {version.ref}")
    return 0


def cmd_deregister(args: argparse.Namespace) -> int:
    home, store, artifacts = _open(args)
    try:
        version = _registry(home, store, artifacts).deregister(args.name, args.version)
    finally:
        store.close()
    if args.json:
        print_json(_version_json(version) | {"deregistered": True})
        return 0
    print_line(
        f"deregistered {version.ref}; model {version.artifact.id[:12]} stays on this node "
        "(`gridpoint model remove` deletes it)"
    )
    return 0


def cmd_alias_set(args: argparse.Namespace) -> int:
    home, store, artifacts = _open(args)
    try:
        change = _registry(home, store, artifacts).set_alias(
            args.name, args.alias, args.version, force=args.force
        )
    finally:
        store.close()
    return _print_change(args, change)


def cmd_alias_remove(args: argparse.Namespace) -> int:
    home, store, artifacts = _open(args)
    try:
        change = _registry(home, store, artifacts).remove_alias(
            args.name, args.alias, force=args.force
        )
    finally:
        store.close()
    return _print_change(args, change)


def _version_json(version: ModelVersion) -> dict[str, Any]:
    return {
        "name": version.name,
        "version": version.version,
        "aliases": list(version.aliases),
        "id": version.artifact.id,
    }


def _print_change(args: argparse.Namespace, change: AliasChange) -> int:
    hook = change.hook
    if args.json:
        print_json(
            {
                "event": change.event,
                "name": change.name,
                "alias": change.alias,
                "version": change.version,
                "previous_version": change.previous,
                "protected": change.protected,
                "id": change.artifact.id,
                "hook": None
                if hook is None
                else {"ok": hook.ok, "exit_code": hook.exit_code, "message": hook.message},
            }
        )
        return 0
    where = f"{change.name}@{change.alias}"
    if not change.changed:
        print_line(f"{where} already is version {change.version}")
    elif change.version is None:
        print_line(f"removed {where} (it was version {change.previous})")
    else:
        was = f" (was version {change.previous})" if change.previous is not None else ""
        print_line(f"{where} -> version {change.version}{was}")
    if hook is not None and hook.ok:
        print_line(f"promotion hook ran ({hook.seconds:.1f} s)")
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
    from gridpoint.errors import ArtifactError
    from gridpoint.node.artifacts.private_parts import private_parts
    from gridpoint.node.peers.trust import find_peer

    _home, store, artifacts = _open(args)
    try:
        found = artifacts.get(args.id)
        parts = private_parts(artifacts.folder(found))
        if parts and not args.include_private:
            raise ArtifactError(
                f"model {found.id[:12]} carries what it learnt from your private data: "
                f"{'; '.join(parts)}; a peer it is shared with receives them all. "
                "Share it anyway with --include-private"
            )
        # The one rule for ids: a full node id, or a unique prefix of a trusted peer's.
        node = args.node if len(args.node) == 40 else find_peer(store, args.node).node_id
        artifact = artifacts.share(found.id, node)
    finally:
        store.close()
    if args.json:
        print_json(artifact_json(artifact))
        return 0
    print_line(f"model {artifact.id[:12]} may now be fetched by {', '.join(artifact.readers)}")
    return 0


_REF_HELP = "model id or unique prefix, or NAME@ALIAS, NAME@VERSION, NAME@latest"


def register(sub: SubParsers) -> None:
    """Adds `model` and its subcommands to the top-level parser."""
    model = sub.add_parser("model", help="models kept by tune and fed, shared with peers")
    cmds = model.add_subparsers(dest="model_command", required=True, metavar="COMMAND")
    p = cmds.add_parser(
        "list", help="the models this node holds: registered names first, then the others"
    )
    p.add_argument("name", nargs="?", help="a registered name: list its versions")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_list)
    p = cmds.add_parser("show", help="a model's record, lineage, files, digests and readers")
    p.add_argument("id", help=_REF_HELP)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_show)
    p = cmds.add_parser(
        "export", help="copy a model to a folder from_pretrained loads, signed (model-signing)"
    )
    p.add_argument("id", help=_REF_HELP)
    p.add_argument("dir", help="destination folder (new or empty)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_export)
    p = cmds.add_parser(
        "verify", help="check an exported folder: its model-signing bundle and key binding"
    )
    p.add_argument("dir", help="a folder `model export` wrote")
    p.add_argument(
        "--signer",
        metavar="NODE_ID",
        help="the node that must have signed it (default: this node or a trusted peer)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_verify)
    p = cmds.add_parser("register", help="register a model as the next version of a name")
    p.add_argument("name", help="the name (letters, digits, '.', '_', '-')")
    p.add_argument("id", help=_REF_HELP)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_register)
    p = cmds.add_parser("deregister", help="take a version off a name (the model stays)")
    p.add_argument("name")
    p.add_argument("version", type=int)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_deregister)
    alias = cmds.add_parser("alias", help="point names like champion at a version")
    alias_cmds = alias.add_subparsers(dest="alias_command", required=True, metavar="COMMAND")
    p = alias_cmds.add_parser(
        "set", help="point ALIAS at VERSION of NAME (runs the promotion hook)"
    )
    p.add_argument("name")
    p.add_argument("alias", help="e.g. champion, staging (lowercase)")
    p.add_argument("version", type=int)
    p.add_argument("--force", action="store_true", help="move a protected alias")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_alias_set)
    p = alias_cmds.add_parser("remove", help="drop an alias (runs the promotion hook)")
    p.add_argument("name")
    p.add_argument("alias")
    p.add_argument("--force", action="store_true", help="remove a protected alias")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_alias_remove)
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
    p.add_argument(
        "--with",
        dest="node",
        required=True,
        metavar="NODE_ID",
        help="the peer's node id, or a unique prefix of a trusted peer's",
    )
    p.add_argument(
        "--include-private",
        action="store_true",
        help="share it even though it carries what it learnt from your private data (a "
        "vocabulary learnt from the training texts, the label names); refused without",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_share)
