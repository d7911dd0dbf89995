"""Text another party chose (a peer's gRPC status details, its name, a server's answer), made
safe to print on one line.

A trusted peer can still be hostile: its words reach the user's terminal, and an escape
sequence there can recolour, retitle or rewrite what the user sees. Must never let a control
character (C0, DEL, C1, which holds the 8-bit CSI) or a format character (bidirectional
overrides, zero-width marks) through, nor a line break.
"""

from __future__ import annotations

import unicodedata

__all__ = ["printable"]

_SPACES = str.maketrans("\t\n\r\v\f", "     ")


def printable(text: str) -> str:
    """text with line breaks and tabs as spaces and every other control or format
    character removed."""
    spaced = text.translate(_SPACES)
    return "".join(c for c in spaced if unicodedata.category(c) not in ("Cc", "Cf"))
