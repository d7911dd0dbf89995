"""Every page of the UI in-process (FastAPI's TestClient over the test world's node): what
each shows, its charts as valid plotly figures, and the hardening of issue 24 (host names,
formula-like names, malformed study rows, order keys, unknown routes)."""

from __future__ import annotations

import hashlib
import html
import json
import math
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient

from gridpoint.errors import FilterError
from gridpoint.node.catalog import publish
from gridpoint.node.daemon.service import NodeService
from gridpoint.node.home import NodeHome
from gridpoint.node.protocol.methods import QUERY
from gridpoint.node.protocol.rpc_errors import status_for
from gridpoint.node.store.sql_store import SqlStore, open_store
from gridpoint.node.ui.app import create_app
from gridpoint.node.ui.studies import optuna_url, read_study
from gridpoint.v1 import catalog_pb2
from tests.helpers import make_record
from tests.ui.conftest import DOLLAR_PARAM, EDGE_STUDY, PRIVATE_CANARY, World

LOOPBACK = "http://127.0.0.1:8765"


@pytest.fixture(scope="module")
def client(world: World) -> Iterator[TestClient]:
    store = open_store(world.beta.db_url())
    app = create_app(world.beta, store, db_url=world.beta.db_url())
    with TestClient(app, base_url=LOOPBACK) as test_client:
        yield test_client
    store.close()


def figures(page: str) -> dict[str, dict[str, Any]]:
    """The plotly figures a page holds, by chart name, each checked by plotly's validators."""
    import plotly.graph_objects as go

    found = {}
    for name, text in re.findall(
        r'<script type="application/json" id="figure-([\w-]+)">(.*?)</script>', page, re.S
    ):
        figure = json.loads(text)
        go.Figure(figure)  # raises on anything plotly.js would not draw
        found[name] = figure
    return found


def whole_ticks(axis: dict[str, Any]) -> bool:
    return bool(axis["tickformat"] == "d" and axis["tickmode"] == "linear" and axis["dtick"] >= 1)


def study_link(name: str, **more: Any) -> str:
    return "/study?" + urlencode({"name": name, **more})


def test_the_study_page_draws_history_parallel_slices_contour_and_curves(
    client: TestClient,
) -> None:
    # Execute
    page = client.get(study_link("sentiment-warm"))
    # Assert: the warm study overlaid with its cold counterpart, trials on whole numbers.
    assert page.status_code == 200
    charts = figures(page.text)
    assert set(charts) == {"history", "parallel", "slice", "contour", "curves"}
    history = charts["history"]
    names = [t["name"] for t in history["data"]]
    assert names == [
        "sentiment-warm (warm-started): trials",
        "sentiment-warm (warm-started): best so far",
        "sentiment-cold (cold): trials",
        "sentiment-cold (cold): best so far",
    ]
    warm_trials = history["data"][0]
    assert warm_trials["x"] == [0, 1, 2, 4, 5, 6, 7]  # trial 3 failed
    assert warm_trials["customdata"][0] == "/study/trial?name=sentiment-warm&number=0"
    assert history["data"][1]["y"] == [0.71, 0.71, 0.74, 0.76, 0.76, 0.77, 0.77]
    assert whole_ticks(history["layout"]["xaxis"])
    assert whole_ticks(charts["curves"]["layout"]["xaxis"])
    assert len(charts["curves"]["data"]) == 8  # every trial reported, the failed one too
    labels = [d["label"] for d in charts["parallel"]["data"][0]["dimensions"]]
    assert labels == ["objective", "batch_size", "learning_rate", "optimizer"]
    assert charts["slice"]["layout"]["xaxis2"]["type"] == "log"  # learning_rate
    assert charts["slice"]["layout"]["xaxis3"]["type"] == "category"  # optimizer
    assert 'data-src="/study/importance?name=sentiment-warm"' in page.text
    assert "/study/warm-start?name=sentiment-warm" in page.text


def test_importances_are_optunas_own(client: TestClient, world: World) -> None:
    import optuna

    # Prepare: what Optuna itself says about the stored study.
    storage = f"sqlite:///{world.beta.path / 'studies.db'}"
    study = optuna.load_study(study_name="sentiment-cold", storage=storage)
    expected = optuna.importance.get_param_importances(study)
    # Execute
    answer = client.get("/study/importance?name=sentiment-cold").json()
    # Assert
    bars = answer["data"][0]
    assert dict(zip(bars["y"], bars["x"], strict=True)) == pytest.approx(expected)
    assert "PedAnovaImportanceEvaluator" in answer["layout"]["title"]["text"]


def test_a_trial_page_links_its_record_and_model(client: TestClient, world: World) -> None:
    page = client.get("/study/trial?name=sentiment-warm&number=0")
    assert page.status_code == 200
    assert f'href="/record/{world.beta_ids[0]}"' in page.text
    assert f'href="/model/{world.models[0]}"' in page.text
    assert whole_ticks(figures(page.text)["trial-curve"]["layout"]["xaxis"])
    assert client.get("/study/trial?name=sentiment-warm&number=99").status_code == 404


def test_the_warm_start_page_says_who_signed_weights_contributions_and_left_out(
    client: TestClient, world: World
) -> None:
    page = client.get("/study/warm-start?name=sentiment-warm")
    assert page.status_code == 200
    text = html.unescape(re.sub(r"<[^>]+>", " ", page.text))
    assert "Alpha Labs" in text and world.alpha.identity.node_id[:12] in text
    assert "left out: another model family" in text
    # Trial 0 ran the configuration of one of Alpha's records (found in the catalog).
    assert re.search(r"trial\(s\) 0 ran its configurations", text), text
    assert "62.0%" in text  # 0.62 of the ensemble at the end (0.62 + 0.38)
    # How each dimension was matched in the prior, as the saved report says.
    assert re.search(r"learning_rate\s+←\s+lr\s+\(normalized name\)", text)
    assert re.search(r"optimizer\s+\(missing: no parameter of that name\)", text)
    assert "2 value(s) clipped" in text
    weights = figures(page.text)["weights"]
    alpha_line = weights["data"][0]
    assert alpha_line["x"] == [0, 7] and alpha_line["y"] == [0.5, 0.62]
    assert whole_ticks(weights["layout"]["xaxis"])


def test_a_model_page_shows_lineage_files_readers_and_holders(
    client: TestClient, world: World
) -> None:
    page = client.get(f"/model/{world.models[0][:10]}")
    assert page.status_code == 200
    assert "Alpha Labs" in page.text.split('id="readers"')[1].split("</td>")[0]
    lineage = figures(page.text)["lineage"]
    links = {link for trace in lineage["data"][1:] for link in trace["customdata"]}
    # record -> model -> federated record -> its model -> derived record
    assert links == {
        f"/record/{world.beta_ids[0]}",
        f"/model/{world.models[0]}",
        f"/record/{world.federated_id}",
        f"/model/{world.models[1]}",
        f"/record/{world.derived_id}",
    }
    columns = {
        link: x
        for trace in lineage["data"][1:]
        for link, x in zip(trace["customdata"], trace["x"], strict=True)
    }
    assert [columns[f"/record/{world.beta_ids[0]}"], columns[f"/model/{world.models[0]}"]] == [0, 1]
    assert columns[f"/record/{world.derived_id}"] == 4
    assert re.search(r"<code>[0-9a-f]{64}</code>", page.text)  # a file's SHA-256
    listing = client.get("/models").text
    assert all(f'href="/model/{m}"' in listing for m in world.models)


def test_the_federation_page_draws_each_member_and_the_global_model(
    client: TestClient, world: World
) -> None:
    page = client.get("/federation/sentiment/run-001")
    charts = figures(page.text)
    accuracy = next(c for c in charts.values() if c["layout"]["title"]["text"] == "accuracy")
    names = [t["name"] for t in accuracy["data"]]
    assert names == ["global model (aggregated)", "Alpha Labs", "Beta Research"]
    assert accuracy["data"][1]["x"] == [1, 2, 3]
    assert whole_ticks(accuracy["layout"]["xaxis"])


def test_compare_colours_each_organization_and_links_each_point(
    client: TestClient, world: World
) -> None:
    ids = [world.alpha_ids[0], world.beta_ids[1], world.alpha_ids[2]]
    page = client.get("/compare?" + urlencode([("id", i) for i in ids]))
    chart = figures(page.text)["compare-0"]
    traces = chart["data"]
    # Alpha's two records first, side by side in one colour, then Beta's.
    assert [t["legendgroup"] for t in traces] == ["Alpha Labs", "Alpha Labs", "Beta Research"]
    assert traces[0]["line"]["color"] == traces[1]["line"]["color"] != traces[2]["line"]["color"]
    assert traces[2]["customdata"][0] == f"/record/{world.beta_ids[1]}"
    assert whole_ticks(chart["layout"]["xaxis"])


def test_a_record_page_keeps_every_point_and_private_details_home(
    client: TestClient, world: World
) -> None:
    page = client.get(f"/record/{world.long_curve_id}")
    trace = figures(page.text)["curve-0"]["data"][0]
    assert len(trace["y"]) == 1000 and trace["line"]["simplify"] is False
    assert PRIVATE_CANARY not in client.get(f"/record/{world.alpha_ids[0]}").text
    assert PRIVATE_CANARY in client.get(f"/record/{world.beta_ids[0]}").text


# --- issue 24 -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["127.0.0.1:8765", "localhost:8765", "LOCALHOST", "[::1]:8765", "127.0.0.2"]
)
def test_loopback_host_names_are_answered(client: TestClient, host: str) -> None:
    assert client.get("/studies", headers={"host": host}).status_code == 200


@pytest.mark.parametrize(
    "host",
    ["rebound.example:8765", "127.0.0.1.nip.io", "localhost.evil.example", "[::2]:8765", ""],
)
def test_a_hostile_host_header_is_refused_without_a_token(client: TestClient, host: str) -> None:
    # A page whose DNS name now points at 127.0.0.1 (DNS rebinding) sends its own name.
    answer = client.get("/studies", headers={"host": host})
    assert answer.status_code == 421
    assert "sentiment" not in answer.text


def test_with_a_token_any_host_name_is_answered_with_the_token_only(world: World) -> None:
    store = open_store(world.beta.db_url())
    token = "a-long-enough-test-token"
    app = create_app(world.beta, store, db_url=world.beta.db_url(), token=token)
    try:
        with TestClient(app, base_url="http://node.example:8765") as test_client:
            assert test_client.get("/studies").status_code == 401
            assert test_client.get(f"/studies?token={token}").status_code == 200
            # The cookie now carries it.
            assert test_client.get("/studies").status_code == 200
    finally:
        store.close()


def test_unknown_routes_answer_an_html_404_like_other_404s(client: TestClient) -> None:
    for path in ("/no/such/page", "/static/no-such-file.css", "/record/abcdef0123"):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert answer.headers["content-type"].startswith("text/html")
        assert 'id="error"' in answer.text
    missing = client.get("/study")  # no name
    assert missing.status_code == 400 and 'id="error"' in missing.text


def test_every_page_says_it_loads_nothing_from_another_host(client: TestClient) -> None:
    answer = client.get("/")
    policy = answer.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy
    assert "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
    script = client.get(
        re.findall(r'<script src="(/assets/[^"]+)"', client.get(study_link("sentiment-cold")).text)[
            0
        ]
    )
    assert script.status_code == 200 and script.headers["content-type"].startswith(
        "text/javascript"
    )
    assert "immutable" in script.headers["cache-control"]


def test_malformed_study_rows_mark_the_trial_and_the_page_answers(
    client: TestClient, world: World
) -> None:
    # Prepare: trial 1 has a NaN choice index, trial 2 a distribution that is not an object.
    view = read_study(optuna_url(world.beta.studies_url()), EDGE_STUDY)
    assert view is not None
    assert [bool(t.problem) for t in view.trials] == [False, True, True, False]
    # Execute
    page = client.get(study_link(EDGE_STUDY))
    # Assert
    assert page.status_code == 200
    assert page.text.count('class="bad"') == 2
    assert "not the index of a choice" in page.text and "not a JSON object" in page.text
    history = figures(page.text)["history"]
    assert history["data"][0]["x"] == [0, 3]
    assert client.get(f"/study/trial?name={EDGE_STUDY}&number=1").status_code == 200


def test_a_formula_like_name_never_breaks_a_page(client: TestClient, world: World) -> None:
    page = client.get(study_link(EDGE_STUDY))
    assert page.status_code == 200
    charts = figures(page.text)
    assert DOLLAR_PARAM in [d["label"] for d in charts["parallel"]["data"][0]["dimensions"]]
    assert charts["slice"]["layout"]["xaxis"]["title"]["text"] == DOLLAR_PARAM


def test_a_formula_like_peer_name_and_metric_never_break_a_page_or_a_picture(
    make_home: Any, tmp_path: Path
) -> None:
    from gridpoint.node.ui.charts import Panel, Series
    from gridpoint.node.ui.plots import render

    # Prepare: a node named like a formula, a metric and a member metric named so.
    home: NodeHome = make_home("$\\frac{1}{0}$ <b>Labs</b>")
    store = open_store(home.db_url())
    record = make_record(1)
    publish(store, home.identity, record)
    run = home.path / "fed" / "f" / "run-001"
    run.mkdir(parents=True)
    (run / "progress.jsonl").write_text(
        json.dumps(
            {
                "event": "round",
                "round": 1,
                "metrics": {"$loss$": 0.5},
                "member_metrics": {home.identity.node_id: {"$loss$": 0.4}},
            }
        )
        + "\n"
    )
    app = create_app(home, store, db_url=home.db_url())
    try:
        with TestClient(app, base_url=LOOPBACK) as test_client:
            # Execute
            rounds = test_client.get("/federation/f/run-001")
            found = publish(store, home.identity, record).id
            compare = test_client.get(f"/compare?id={found}")
    finally:
        store.close()
    # Assert: the pages answer; the names are text (escaped for plotly's labels).
    assert rounds.status_code == compare.status_code == 200
    member = figures(rounds.text)["round-0"]["data"][1]["name"]
    assert member == "$\\frac{1}{0}$ &lt;b&gt;Labs&lt;/b&gt;"
    picture = render(
        [Panel("$loss$", "round", "$x^$", [Series("$\\frac$", [1, 2], [1, 2])])], "png"
    )
    assert picture.startswith(b"\x89PNG")


def test_an_order_key_with_a_nul_is_a_filter_error_over_rpc_and_in_the_ui(
    db_url: str, make_home: Any
) -> None:
    # Prepare: a store on SQLite or PostgreSQL with a record that has parameters.
    home: NodeHome = make_home("Orders")
    store = open_store(db_url)
    assert isinstance(store, SqlStore)
    publish(store, home.identity, make_record(1))
    try:
        # Execute / Assert: over RPC, INVALID_ARGUMENT (not INTERNAL).
        service = NodeService(home, store)
        asked = catalog_pb2.QueryRequest(filter="", limit=5, order_by="params.a\x00b")
        with pytest.raises(FilterError) as refused:
            service.answer(QUERY, "", asked.SerializeToString())
        assert status_for(refused.value).name == "INVALID_ARGUMENT"
        # In the UI, the catalog's own error, not a 500.
        app = create_app(home, store, db_url=db_url)
        with TestClient(app, base_url=LOOPBACK) as test_client:
            page = test_client.get("/?" + urlencode({"order": "params.a\x00b desc"}))
        assert page.status_code == 400
        assert "is not a key" in html.unescape(page.text)
    finally:
        store.close()


def test_the_ui_never_writes_to_the_store_or_the_studies(client: TestClient, world: World) -> None:
    def dump(path: Path) -> str:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return hashlib.sha256("\n".join(db.iterdump()).encode()).hexdigest()

    store_db = Path(world.beta.db_url().removeprefix("sqlite:///"))
    before = (
        dump(store_db),
        dump(world.beta.path / "studies.db"),
        sorted(world.beta.path.rglob("*")),
    )
    for path in (
        "/",
        study_link("sentiment-warm"),
        "/study/trial?name=sentiment-warm&number=0",
        "/study/warm-start?name=sentiment-warm",
        f"/model/{world.models[1]}",
        "/models",
        "/federation/sentiment/run-001",
    ):
        assert client.get(path).status_code == 200, path
    after = (
        dump(store_db),
        dump(world.beta.path / "studies.db"),
        sorted(world.beta.path.rglob("*")),
    )
    assert after == before


def test_numbers_that_are_not_finite_become_gaps() -> None:
    from gridpoint.node.ui.figures import Chart

    text = Chart(
        "x", {"data": [{"y": [1.0, math.nan, math.inf]}], "layout": {"title": "</script>"}}
    ).json()
    assert json.loads(text)["data"][0]["y"] == [1.0, None, None]
    assert "</script>" not in text


def test_plot_pictures_put_trials_rounds_and_steps_on_whole_numbers() -> None:
    from gridpoint.node.ui.charts import Panel, Series
    from gridpoint.node.ui.plots import render

    # Three trials would get ticks at 0.00, 0.25, ... 2.00 on a plain axis.
    svg = render([Panel("best", "trial", "objective", [Series("a", range(3), [1.0] * 3)])], "svg")
    ticks = re.findall(r'<g id="xtick_\d+">.*?<text[^>]*>([^<]*)</text>', svg.decode(), re.S)
    assert ticks and all(re.fullmatch(r"−?\d+", t) for t in ticks), ticks


def test_a_nan_choice_index_on_postgresql_marks_the_trial(pg_url: str) -> None:
    import optuna
    from sqlalchemy import create_engine, text

    # Prepare: a study beside a PostgreSQL store; PostgreSQL keeps a real NaN.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = optuna_url(pg_url)
    assert url is not None
    study = optuna.create_study(study_name="pg-nan", storage=url, direction="minimize")
    for value in (0.5, 0.3):
        trial = study.ask()
        trial.suggest_categorical("optimizer", ["adamw", "sgd"])
        study.tell(trial, value)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE trial_params SET param_value = 'NaN' WHERE trial_id ="
                " (SELECT trial_id FROM trials WHERE number = 1)"
            )
        )
    engine.dispose()
    # Execute
    view = read_study(url, "pg-nan")
    # Assert
    assert view is not None
    assert [t.problem for t in view.trials][0] == ""
    assert "not the index of a choice" in view.trials[1].problem
    assert view.trials[1].params == {} and view.trials[1].value == 0.3
