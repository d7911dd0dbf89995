"""The written maps cannot drift: every path a docstring or docs/*.md names exists, and each
package's `__init__` docstring names every module and subpackage of its folder.

Pure Python over the source text (nothing is imported), so it runs in well under a second.
"""

from __future__ import annotations

import ast
import functools
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The real folders of our code (gridpoint/node, /trainers and /federation link to the last three).
CODE = ("gridpoint", "node", "trainers", "federation")
#: Generated code, and the Flower App bundle `flwr run` ships (an app of its own).
NOT_MAPPED = (ROOT / "gridpoint" / "v1", ROOT / "federation" / "flower_app")
#: Folders a path may start with when it names a folder of this repository.
TOP = ("gridpoint", "node", "trainers", "federation", "tests", "docs", "bench", "proto", "tools",
       "docker", "examples")  # fmt: skip

# A file of the kinds a map names (`sync.py`, `node/store/keys.py`, `records.proto`, `README.md`)
# or a folder of this repository (`node/artifacts/`, `trainers/transfer/`).
_FILE = re.compile(r"(?<![\w/.<>-])((?:[\w.-]+/)*[\w-]+\.(?:py|proto|md))(?![\w/])")
_FOLDER = re.compile(rf"(?<![\w/.<>-])((?:{'|'.join(TOP)})/(?:[\w-]+/)*)(?![\w.])")


def _sources() -> list[Path]:
    files = [p for top in CODE for p in (ROOT / top).rglob("*.py") if not p.is_symlink()]
    return sorted(
        p
        for p in files
        if not any(p.is_relative_to(skip) for skip in NOT_MAPPED)
        and not any(part.is_symlink() for part in p.parents if part.is_relative_to(ROOT))
        and "migrations" not in p.parts
    )


@functools.cache
def _repo_files() -> frozenset[str]:
    # Pruned while walking: CI's virtual environment lies inside the checkout, and walking
    # its hundred thousand files only to drop them cost seconds per test.
    skip = {".git", ".venv", "build", "node_modules", "__pycache__"}
    found: set[str] = set()
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in skip]
        base = Path(folder).relative_to(ROOT)
        found.update((base / name).as_posix() for name in names)
    return frozenset(found)


def _exists(named: str, near: Path, files: frozenset[str]) -> bool:
    """Whether a named path is a real one: from the root, from the naming file's folder or an
    ancestor of it, or as the tail of a path in the repository (a map may name `base.py` of
    its own folder, or `store/sql_store.py` of a subpackage). A package's map names its own
    modules: a bare file name there is looked for in its folder alone."""
    named = named.rstrip("/")
    folder = near if near.is_dir() else near.parent
    if near.name == "__init__.py" and "/" not in named:
        return (folder / named).exists()
    for base in (ROOT, *(p for p in (folder, *folder.parents) if p.is_relative_to(ROOT))):
        if (base / named).exists():
            return True
    return any(f == named or f.endswith("/" + named) or f"/{named}/" in f"/{f}" for f in files)


def _docstrings(source: Path) -> list[str]:
    """The docstrings of a module, its classes and its functions."""
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    nodes = [n for n in ast.walk(ast.parse(source.read_text())) if isinstance(n, kinds)]
    return [d for n in nodes if (d := ast.get_docstring(n))]


def _named(text: str) -> set[str]:
    return set(_FILE.findall(text)) | set(_FOLDER.findall(text))


def test_every_path_a_docstring_names_exists() -> None:
    files = _repo_files()
    missing = []
    for source in _sources():
        for named in sorted(_named("\n".join(_docstrings(source)))):
            if not _exists(named, source, files):
                missing.append(f"{source.relative_to(ROOT)}: {named}")
    assert not missing, "docstrings name paths that do not exist:\n" + "\n".join(missing)


def test_every_path_docs_and_the_readme_name_exists() -> None:
    files = _repo_files()
    missing = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for named in sorted(_named(doc.read_text())):
            if not _exists(named, ROOT, files):
                missing.append(f"{doc.relative_to(ROOT)}: {named}")
    assert not missing, "docs name paths that do not exist:\n" + "\n".join(missing)


def test_each_package_docstring_maps_every_module_of_its_folder() -> None:
    unmapped = []
    for init in _sources():
        if init.name != "__init__.py":
            continue
        folder = init.parent
        docstring = ast.get_docstring(ast.parse(init.read_text())) or ""
        modules = [p.name for p in folder.glob("*.py") if p.name != "__init__.py"]
        packages = [f"{p.name}/" for p in folder.iterdir() if (p / "__init__.py").exists()]
        for name in sorted(modules + packages):
            if not re.search(rf"(?<![\w/.-]){re.escape(name)}", docstring):
                unmapped.append(f"{folder.relative_to(ROOT)}/__init__.py does not name {name}")
    assert not unmapped, "package maps miss modules:\n" + "\n".join(unmapped)


def test_the_maps_test_sees_a_missing_path_and_an_unmapped_module(tmp_path: Path) -> None:
    # The checks above pass only if they can fail: a made-up path is not found, a real one is.
    files = _repo_files()
    assert not _exists("node/sql_store.py", ROOT / "node" / "store" / "base.py", files)
    assert _exists("sql_store.py", ROOT / "node" / "store" / "base.py", files)
    assert _exists("node/store/", ROOT, files)
    assert not _exists("__main__.py", ROOT / "federation" / "__init__.py", files)
    assert _named(
        "see node/store/keys.py and `trainers/transfer/`, not warm-start/<hash>.json"
    ) == {
        "node/store/keys.py",
        "trainers/transfer/",
    }
