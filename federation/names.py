"""Federation names: what `fed host` and `fed join` accept as one.

A name becomes a folder under the home (`fed/NAME`) and a word in the join command the host
prints for its members to paste, so it must be a plain word: never a path, never something a
shell splits or expands. This module only checks; it never creates anything.
"""

from __future__ import annotations

import re

from gridpoint.errors import ConfigError

__all__ = ["check_federation_name"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_federation_name(name: str) -> str:
    """The name unchanged; ConfigError when it is not a plain word (letters, digits, . _ -)."""
    if not _NAME.fullmatch(name) or ".." in name:
        raise ConfigError(
            f"--federation {name!r}: a federation name is 1 to 64 letters, digits, '.', '_' or "
            "'-', starting with a letter or digit"
        )
    return name
