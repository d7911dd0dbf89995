"""The UI in a real browser (Debian's Chromium via Playwright) against a real `gridpoint ui`:
every page clicked through, its charts drawn by plotly.js (hover, zoom, a click opens what a
point stands for), nothing loaded from another host, no script error."""

from __future__ import annotations

import http.client
import re
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.helpers import cli
from tests.ui.conftest import EDGE_STUDY, PRIVATE_CANARY, UiProcess, World, for_readme, shot

#: Longest wait for a chart Optuna computes in a child process (importances).
SLOW_CHART_MS = 60_000


def _only_the_node(page: Any, ui: UiProcess) -> None:
    hosts = {urlparse(u).netloc for u in page.requests}
    assert hosts == {f"127.0.0.1:{ui.port}"}, page.requests
    assert page.errors == [], page.errors


def _drawn(page: Any, name: str, timeout: int = 15_000) -> Any:
    """The chart #chart-NAME once plotly.js has drawn it."""
    chart = page.locator(f"#chart-{name}")
    page.wait_for_selector(f"#chart-{name}[data-drawn='1']", timeout=timeout)
    return chart


def _ticks(chart: Any, axis: str = "x") -> list[str]:
    return [t for t in chart.locator(f"g.{axis}tick text").all_text_contents() if t]


def _whole(ticks: list[str]) -> bool:
    return bool(ticks) and all(re.fullmatch(r"−?-?\d[\d,]*", t) for t in ticks)


def _line_vertices(chart: Any, trace: int = 0) -> int:
    d = chart.locator(".scatterlayer .trace").nth(trace).locator("path.js-line").first
    return len(re.findall(r"[ML]", d.get_attribute("d") or ""))


def _click_point(page: Any, chart: Any, trace: int = 0, point: int = 0) -> None:
    """Clicks a drawn point where it is on the screen (plotly listens on the plot area).

    Plotly's click goes to the point it hovers last: the mouse rests on the point until
    plotly hovers that one, or on a loaded machine the click went to the point hovered before.
    """
    box = chart.locator(".scatterlayer .trace").nth(trace).locator("path.point").nth(point)
    where = box.bounding_box()
    x, y = where["x"] + where["width"] / 2, where["y"] + where["height"] / 2
    page.mouse.move(x, y)
    page.wait_for_function(
        "([gd, t, p]) => (gd._hoverdata || []).some(d => d.curveNumber === t && d.pointNumber === p)",
        arg=[chart.element_handle(), trace, point],
    )
    page.mouse.click(x, y)


def _load(page: Any, selector: str) -> None:
    """Clicks what loads a new page, and waits until it has."""
    with page.expect_navigation():
        page.click(selector)


def test_catalog_filters_sorts_and_names_organizations(
    page: Any, ui: UiProcess, world: World
) -> None:
    # Prepare / Execute: the whole catalog, then a filter sorted by a metric column.
    page.goto(ui.base + "/")
    rows = page.locator("#catalog tbody tr")
    assert rows.count() == len(world.records)
    signers = set(page.locator("#catalog tbody tr td:nth-child(3)").all_inner_texts())
    assert {s.replace(" (this node)", "") for s in signers} == {"Alpha Labs", "Beta Research"}
    page.fill("#filter", "metrics.accuracy > 0.7")
    page.click("#filter-form summary")
    page.check("input[value='metrics.accuracy']")
    # Each of these clicks loads a page: read it once it has loaded, not the one before.
    _load(page, "#apply")
    _load(page, "a.sort[data-key='metrics.accuracy']")
    # Assert: only matching records, sorted by accuracy, highest first, numbers rounded.
    values = [float(v) for v in page.locator("td[data-key='metrics.accuracy']").all_inner_texts()]
    expected = sorted(
        (r.metrics["accuracy"] for r in world.records.values() if r.metrics["accuracy"] > 0.7),
        reverse=True,
    )
    assert values == [float(f"{v:.4g}") for v in expected]
    _load(page, "a.sort[data-key='metrics.accuracy']")
    ascending = [
        float(v) for v in page.locator("td[data-key='metrics.accuracy']").all_inner_texts()
    ]
    assert ascending == sorted(values)
    shot(page, "catalog", readme=True)
    # A malformed filter: the CLI's error, inline, the filter kept.
    page.fill("#filter", "metrics.accuracy >")
    _load(page, "#apply")
    error = page.locator("#filter-error").inner_text()
    from_cli = cli("catalog", "query", "metrics.accuracy >", home=world.beta.path)
    assert from_cli.returncode == 1 and from_cli.stderr.strip() == f"error: {error}"
    assert page.locator("#filter").input_value() == "metrics.accuracy >"
    _only_the_node(page, ui)


def test_record_and_compare_draw_every_point_on_whole_steps(
    page: Any, ui: UiProcess, world: World
) -> None:
    # A record: every one of its 1,000 points, steps on whole numbers, zoomed too.
    page.goto(ui.base + f"/record/{world.long_curve_id[:10]}")
    assert "Alpha Labs" in page.locator("#signer").inner_text()
    assert "Alpha Labs" in page.locator("#sources").inner_text()
    chart = _drawn(page, "curve-0")
    assert _line_vertices(chart) == 1000
    before = _ticks(chart)
    assert _whole(before)
    # Zoomed into a few dozen steps, the ticks follow and stay whole numbers.
    box = chart.locator(".nsewdrag").bounding_box()
    page.mouse.move(box["x"] + 5, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + 25, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()
    page.wait_for_function(
        "before => [...document.querySelectorAll('#chart-curve-0 g.xtick text')]"
        ".map(t => t.textContent).join() !== before",
        arg=",".join(before),
    )
    zoomed = _ticks(chart)
    assert len(zoomed) >= 3 and _whole(zoomed), zoomed
    assert page.locator("#private").count() == 0
    shot(page, "record-1000-points")
    # Compare two organizations' records from the catalog: one chart, coloured by signer.
    page.goto(ui.base + "/?q=" + "kind = 'trial'")
    first, second = world.alpha_ids[1], world.beta_ids[2]
    page.check(f"tr[data-id='{first}'] input[name=id]")
    page.check(f"tr[data-id='{second}'] input[name=id]")
    _load(page, "#compare")
    assert page.url.startswith(ui.base + "/compare?")
    chart = _drawn(page, "compare-0")
    legend = " ".join(chart.locator(".legend .legendtext").all_text_contents())
    assert "Alpha Labs" in legend and "Beta Research" in legend
    for trace, rid in enumerate((first, second)):
        assert _line_vertices(chart, trace) == len(world.records[rid].curve)
    shot(page, "compare", readme=True)
    # A point opens its record.
    _click_point(page, chart, trace=1, point=3)
    page.wait_for_url(f"**/record/{second}")
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
    # Lineage: a parent held here, one not in this catalog; a click opens the parent.
    child = world.beta_ids[3]
    page.goto(ui.base + f"/record/{child}")
    lineage = page.locator("#lineage li").all_inner_texts()
    assert lineage[0].startswith(world.alpha_ids[1][:12]) and "Alpha Labs" in lineage[0]
    assert "not in this catalog" in lineage[1]
    _load(page, f"#lineage a[href='/record/{world.alpha_ids[1]}']")
    assert "Alpha Labs" in page.locator("#signer").inner_text()


def test_a_study_its_trials_and_its_warm_start(page: Any, ui: UiProcess, world: World) -> None:
    page.goto(ui.base + "/studies")
    page.click("text=sentiment-warm")
    # Every chart drawn; Optuna's importances arrive once computed.
    history = _drawn(page, "history")
    for name in ("parallel", "slice", "contour", "curves"):
        _drawn(page, name)
    importance = _drawn(page, "importance", timeout=SLOW_CHART_MS)
    assert set(importance.locator("g.ytick text").all_text_contents()) == {
        "learning_rate",
        "batch_size",
        "optimizer",
    }
    # History: 7 complete warm trials and 7 cold ones overlaid, trials on whole numbers.
    points = history.locator(".scatterlayer .trace path.point")
    assert points.count() == 14
    assert _whole(_ticks(history))
    assert page.locator("#trials tr").count() == 1 + 8
    assert _line_vertices(_drawn(page, "curves")) == 5
    # Hover names the trial and its value.
    page.mouse.move(*_point_centre(history, 0, 2))
    page.wait_for_selector(".hoverlayer .hovertext")
    assert "trial 2" in (page.locator(".hoverlayer .hovertext").first.text_content() or "")
    shot(page, "study", readme=True)
    # Select a trial: its page, its record, its kept model.
    _click_point(page, history, trace=0, point=0)
    page.wait_for_url("**/study/trial?name=sentiment-warm&number=0")
    assert _whole(_ticks(_drawn(page, "trial-curve")))
    _load(page, "#trial-model")
    assert page.locator("#model").count() == 1
    page.go_back()
    page.click("#trial-record")
    page.wait_for_url(f"**/record/{world.beta_ids[0]}")
    # The warm start: priors, signers, weights over the trials, what was left out.
    page.goto(ui.base + "/study?name=sentiment-warm")
    page.click("#warm-start-link")
    weights = _drawn(page, "weights")
    assert _whole(_ticks(weights))
    table = page.locator("#run-1").inner_text()
    assert "Alpha Labs" in table and "left out: another model family" in table
    assert "ran its configurations" in table
    shot(page, "warm-start", readme=True)
    # A study with malformed rows and a parameter named like a formula still draws.
    page.goto(ui.base + "/study?name=" + EDGE_STUDY)
    _drawn(page, "history")
    _drawn(page, "parallel")
    assert page.locator("#trials tr.bad").count() == 2
    _only_the_node(page, ui)


def _point_centre(chart: Any, trace: int, point: int) -> tuple[float, float]:
    box = chart.locator(".scatterlayer .trace").nth(trace).locator("path.point").nth(point)
    where = box.bounding_box()
    return where["x"] + where["width"] / 2, where["y"] + where["height"] / 2


def test_models_lineage_and_a_federation(page: Any, ui: UiProcess, world: World) -> None:
    page.goto(ui.base + "/models")
    _load(page, f"a[href='/model/{world.models[0]}']")
    assert "Alpha Labs" in page.locator("#readers").inner_text()
    assert page.locator("#files tr").count() == 1 + 2
    lineage = _drawn(page, "lineage")
    texts = lineage.locator(".scatterlayer text").all_text_contents()
    assert sum("record" in t for t in texts) == 3 and sum("model" in t for t in texts) == 2
    shot(page, "model", readme=True)
    # A node of the graph opens its page: the derived record, the newest generation.
    records = lineage.locator(".scatterlayer .trace").nth(1)
    last = records.locator("path.point").count() - 1
    _click_point(page, lineage, trace=1, point=last)
    page.wait_for_url(f"**/record/{world.derived_id}")
    # The federation: each member's metric and the global model's, round by round.
    page.goto(ui.base + "/federations")
    _load(page, "text=sentiment · run-001")
    assert "Alpha Labs" in page.locator("#members").inner_text()
    assert "update is not signed" in page.locator("#rounds").inner_text()
    chart = _drawn(page, "round-0")
    legend = chart.locator(".legend .legendtext").all_text_contents()
    assert legend == ["global model (aggregated)", "Alpha Labs", "Beta Research"]
    assert _ticks(chart) == ["1", "2", "3"]
    shot(page, "federation")
    _only_the_node(page, ui)


def test_a_rebound_host_name_gets_nothing_from_the_real_ui(ui: UiProcess) -> None:
    # A page at rebound.example whose DNS now answers 127.0.0.1 (DNS rebinding).
    connection = http.client.HTTPConnection("127.0.0.1", ui.port, timeout=10)
    connection.request("GET", "/studies", headers={"Host": f"rebound.example:{ui.port}"})
    answer = connection.getresponse()
    body = answer.read().decode()
    connection.close()
    assert answer.status == 421 and "sentiment" not in body
    with urllib.request.urlopen(ui.base + "/studies", timeout=10) as ok:
        assert ok.status == 200


@pytest.mark.slow
def test_plot_writes_cold_vs_warm_side_by_side(world: World, tmp_path: Any) -> None:
    out = tmp_path / "cold-vs-warm.png"
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
    for_readme(out)
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
