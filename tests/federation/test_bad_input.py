"""`fed host` and `fed join` refuse bad input at once, before any Flower process starts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gridpoint.errors import ConfigError
from gridpoint.federation.names import check_federation_name
from tests.cli_main import run_main
from tests.helpers import MakeHome

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("name", ["bad name/../x", "..", "a/b", "-x", "", "x" * 65, "a b"])
def test_a_federation_name_that_is_not_a_plain_word_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="a federation name is 1 to 64 letters"):
        check_federation_name(name)


def test_fed_host_with_a_path_for_a_name_writes_nothing_and_says_why(
    make_home: MakeHome, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = make_home("H")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    ran = run_main(
        capsys, "fed", "host", "--federation", "bad name/../x",
        "--study", str(EXAMPLES / "tiny-study.toml"), home=home.path,
    )  # fmt: skip

    assert ran.returncode == 1
    assert "a federation name is 1 to 64 letters" in ran.stderr
    assert "Traceback" not in ran.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--dp", "--dp-epsilon", "-1"], "--dp needs --dp-epsilon in (0, 100]"),
        (["--dp", "--dp-delta", "1"], "--dp-delta in (0, 1)"),
        (["--dp", "--dp-clip", "0"], "--dp-clip > 0"),
        (["--dp-adaptive-clip"], "add --dp"),
        (["--dp", "--dp-adaptive-clip", "--secure-aggregation"], "SecAgg+ hides from the host"),
        (["--secure-aggregation", "--strategy", "fedadam"], "fedavg only, not fedadam"),
        (["--secure-aggregation", "--min-members", "1"], "--min-members 2 at least"),
    ],
)
def test_fed_host_with_impossible_options_says_which_before_anything_else(
    make_home: MakeHome,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    says: str,
) -> None:
    # A home that trusts no peer: any later check would fail on that, not on the option.
    home = make_home("H")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    ran = run_main(
        capsys, "fed", "host", "--federation", "f", "--study", str(EXAMPLES / "tiny-study.toml"),
        *options, home=home.path,
    )  # fmt: skip

    assert ran.returncode == 1
    assert says in ran.stderr and "Traceback" not in ran.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize(
    ("pipeline", "says"),
    [
        ("tiny_pipeline", "expected MODULE:FUNCTION"),
        ("no_such_module:load", "'no_such_module' cannot be imported"),
        ("tiny_pipeline:no_such_function", "'no_such_function' is not a function"),
    ],
)
def test_fed_join_with_a_wrong_pipeline_says_so_before_reaching_the_host(
    make_home: MakeHome,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    pipeline: str,
    says: str,
) -> None:
    home = make_home("M")
    shutil.copy(EXAMPLES / "tiny_pipeline.py", tmp_path / "tiny_pipeline.py")

    # No host listens on port 9 of loopback: reaching one would fail differently, and later.
    ran = run_main(
        capsys, "fed", "join", "127.0.0.1:9", "--federation", "f", "--pipeline", pipeline,
        "--pipeline-dir", str(tmp_path), "--max-wait", "5", home=home.path,
    )  # fmt: skip

    assert ran.returncode == 1
    assert says in ran.stderr
    assert "127.0.0.1:9" not in ran.stderr
    assert not (home.path / "fed-member").exists()
