"""Text another party chose never reaches the terminal with a control or format character."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridpoint.node.cli.main import main
from gridpoint.node.protocol.peer_text import printable

HOSTILE = "a\x1b[2J\x1b]0;pwned\x07b\x9b31m\u202ec\u200bd\r\ne\tf\x00"


def test_escapes_bidi_and_zero_width_marks_go_and_line_breaks_become_spaces() -> None:
    assert printable(HOSTILE) == "a[2J]0;pwnedb31mcd  e f"
    assert printable("naïve café, 東京, emoji 🙂") == "naïve café, 東京, emoji 🙂"


@settings(max_examples=300, deadline=None, derandomize=True)
@given(text=st.text())
def test_no_control_or_format_character_survives(text: str) -> None:
    cleaned = printable(text)
    assert not any(unicodedata.category(c) in ("Cc", "Cf") for c in cleaned)
    assert printable(cleaned) == cleaned


def test_the_cli_prints_an_error_quoting_outside_text_on_one_clean_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / f"no{HOSTILE.replace(chr(0), '')}home"  # a path holds no NUL

    code = main(["--home", str(home), "identity"])

    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1
    assert not any(unicodedata.category(c) in ("Cc", "Cf") for c in err.rstrip("\n"))
