"""The UI in a real browser (Debian's Chromium via Playwright) against a real `gridpoint ui`."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.helpers import cli
from tests.ui.conftest import PRIVATE_CANARY, SCREENSHOTS, UiProcess, World, shot


def _path_points(d: str) -> list[tuple[float, float]]:
    numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", d)]
    return list(zip(numbers[::2], numbers[1::2], strict=True))


def _drawn(page: Any, chart: int = 0, series: int = 0) -> list[tuple[float, float]]:
    """The vertices of one drawn line, in SVG pixels (y grows downwards)."""
    d = (
        page.locator(".chart")
        .nth(chart)
        .locator(f"g#series-0-{series} path")
        .first.get_attribute("d")
    )
    assert d and d.startswith("M"), d
    return _path_points(d)


def _assert_draws(points: list[tuple[float, float]], values: list[float]) -> None:
    """Every value is a vertex, left to right, each higher value higher on the page."""
    assert len(points) == len(values)
    xs = [x for x, _ in points]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)
    for i in range(len(values)):
        for j in range(i + 1, min(len(values), i + 25)):
            if values[i] < values[j]:
                assert points[i][1] > points[j][1]
            elif values[i] > values[j]:
                assert points[i][1] < points[j][1]


def _only_the_node(page: Any, ui: UiProcess) -> None:
    hosts = {urlparse(u).netloc for u in page.requests}
    assert hosts == {f"127.0.0.1:{ui.port}"}, page.requests


def test_catalog_filters_sorts_and_names_organizations(
    page: Any, ui: UiProcess, world: World
) -> None:
    # Prepare / Execute: the whole catalog, then a filter sorted by a metric column.
    page.goto(ui.base + "/")
    rows = page.locator("#catalog tbody tr")
    assert rows.count() == len(world.alpha_ids) + len(world.beta_ids)
    signers = set(page.locator("#catalog tbody tr td:nth-child(3)").all_inner_texts())
    assert {s.replace(" (this node)", "") for s in signers} == {"Alpha Labs", "Beta Research"}
    page.fill("#filter", "metrics.accuracy > 0.7")
    page.click("#filter-form summary")
    page.check("input[value='metrics.accuracy']")
    page.click("#apply")
    page.click("a.sort[data-key='metrics.accuracy']")
    # Assert: only matching records, sorted by accuracy, highest first, numbers rounded.
    values = [float(v) for v in page.locator("td[data-key='metrics.accuracy']").all_inner_texts()]
    expected = sorted(
        (r.metrics["accuracy"] for r in world.records.values() if r.metrics["accuracy"] > 0.7),
        reverse=True,
    )
    assert values == [float(f"{v:.4g}") for v in expected]
    page.click("a.sort[data-key='metrics.accuracy']")
    ascending = [
        float(v) for v in page.locator("td[data-key='metrics.accuracy']").all_inner_texts()
    ]
    assert ascending == sorted(values)
    shot(page, "catalog", readme=True)
    _only_the_node(page, ui)


def test_a_malformed_filter_shows_the_cli_error_inline(
    page: Any, ui: UiProcess, world: World
) -> None:
    page.goto(ui.base + "/")
    page.fill("#filter", "metrics.accuracy >")
    page.click("#apply")
    error = page.locator("#filter-error").inner_text()
    from_cli = cli("catalog", "query", "metrics.accuracy >", home=world.beta.path)
    assert from_cli.returncode == 1
    assert from_cli.stderr.strip() == f"error: {error}"
    assert page.locator("#filter").input_value() == "metrics.accuracy >"
    shot(page, "filter-error")


def test_a_record_page_draws_every_point_of_its_curve(
    page: Any, ui: UiProcess, world: World
) -> None:
    record = world.records[world.long_curve_id]
    page.goto(ui.base + f"/record/{world.long_curve_id[:10]}")
    assert "Alpha Labs" in page.locator("#signer").inner_text()
    # Provenance: the peer sync found it at (here its author), by organization name.
    assert "Alpha Labs" in page.locator("#sources").inner_text()
    _assert_draws(_drawn(page), [p.value for p in sorted(record.curve)])
    assert page.locator("#private").count() == 0
    shot(page, "record-1000-points")
    _only_the_node(page, ui)


def test_compare_draws_each_record_on_one_chart(page: Any, ui: UiProcess, world: World) -> None:
    page.goto(ui.base + "/?q=" + "kind = 'trial'")
    first, second = world.alpha_ids[1], world.beta_ids[2]
    page.check(f"tr[data-id='{first}'] input[name=id]")
    page.check(f"tr[data-id='{second}'] input[name=id]")
    page.click("#compare")
    assert page.url.startswith(ui.base + "/compare?")
    for series, rid in enumerate((first, second)):
        _assert_draws(_drawn(page, 0, series), [p.value for p in sorted(world.records[rid].curve)])
    legend = page.locator(".chart").first.inner_text()
    assert "Alpha Labs" in legend and "Beta Research" in legend
    shot(page, "compare")
    _only_the_node(page, ui)


def test_private_details_only_on_this_nodes_own_records(
    page: Any, ui: UiProcess, world: World
) -> None:
    page.goto(ui.base + f"/record/{world.beta_ids[0]}")
    assert PRIVATE_CANARY in page.locator("#private").inner_text()
    # A private run of this node names a peer's record: still nothing private on its page.
    page.goto(ui.base + f"/record/{world.alpha_ids[0]}")
    html = page.content()
    assert PRIVATE_CANARY not in html and "canary-error" not in html
    page.goto(ui.base + "/?q=" + "metrics.accuracy > 0")
    assert PRIVATE_CANARY not in page.content()


def test_study_and_federation_pages(page: Any, ui: UiProcess, world: World) -> None:
    page.goto(ui.base + "/studies")
    page.click("text=sentiment-warm")
    assert "Alpha Labs" in page.locator("table.warm").inner_text()
    assert "another model family" in page.locator("table.warm").inner_text()
    trials = page.locator("#trials tr")
    assert trials.count() == 1 + 8
    # trial 3 failed: the best-so-far steps join the 7 complete trials (2 vertices a step).
    assert len(_drawn(page, 0, 1)) == 2 * 7 - 1
    assert page.locator(".chart").first.locator("g#series-0-0 use").count() == 7
    shot(page, "study")
    page.goto(ui.base + "/federations")
    page.click("text=sentiment · run-001")
    assert page.locator("#members").inner_text().count("\n") >= 1
    assert "Alpha Labs" in page.locator("#members").inner_text()
    assert "update is not signed" in page.locator("#rounds").inner_text()
    assert len(_drawn(page)) == 3
    shot(page, "federation")
    _only_the_node(page, ui)


@pytest.mark.slow
def test_plot_writes_cold_vs_warm_side_by_side(world: World, tmp_path: Any) -> None:
    out = SCREENSHOTS / "cold-vs-warm.png"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    result = cli(
        "plot",
        "sentiment-cold",
        "sentiment-warm",
        "--kind",
        "best-so-far",
        "--out",
        str(out),
        home=world.beta.path,
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = tmp_path / "curves.svg"
    result = cli(
        "plot",
        world.alpha_ids[0][:8],
        world.beta_ids[0][:8],
        "--out",
        str(svg),
        home=world.beta.path,
    )
    assert result.returncode == 0, result.stderr
    assert svg.read_text().count('id="series-0-') == 2
    rounds = cli(
        "plot",
        "sentiment",
        "--kind",
        "rounds",
        "--out",
        str(tmp_path / "r.png"),
        home=world.beta.path,
    )
    assert rounds.returncode == 0 and "accuracy" in rounds.stdout, rounds.stderr


def test_a_non_loopback_listen_needs_the_token(world: World) -> None:
    process = UiProcess(world.beta, listen="0.0.0.0:0")
    try:
        token = re.search(r"token=([\w-]+)", process.url)
        assert token is not None, process.url
        try:
            urllib.request.urlopen(process.base + "/", timeout=10)
            raise AssertionError("served without the token")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401
        try:
            urllib.request.urlopen(process.base + "/?token=wrong-token-of-some-length", timeout=10)
            raise AssertionError("served with a wrong token")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401
        with urllib.request.urlopen(process.base + f"/?token={token.group(1)}", timeout=10) as ok:
            assert ok.status == 200
    finally:
        process.stop()


def test_a_record_shows_its_lineage(page: Any, ui: UiProcess, world: World) -> None:
    child = world.beta_ids[-1]
    page.goto(ui.base + f"/record/{child}")
    lineage = page.locator("#lineage li").all_inner_texts()
    assert lineage[0].startswith(world.alpha_ids[1][:12]) and "Alpha Labs" in lineage[0]
    assert "not in this catalog" in lineage[1]
    page.click(f"#lineage a[href='/record/{world.alpha_ids[1]}']")
    assert "Alpha Labs" in page.locator("#signer").inner_text()
