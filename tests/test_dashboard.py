"""What optuna-dashboard shows users: why each model-chosen trial was picked."""

from __future__ import annotations

import json
import os
from pathlib import Path
import shutil
import socket
import subprocess
import sys
import time
from typing import Any
from wsgiref.util import setup_testing_defaults

import optuna
import optuna_dashboard
import pytest

from optuna_deepens import DeepEnsembleSampler
from optuna_deepens.dashboard import DashboardFigures
from optuna_deepens.dashboard import pareto_set


def _get(app: Any, path: str) -> dict:
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    environ["PATH_INFO"] = path
    status: list[str] = []
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    assert status == ["200 OK"], body[:500]
    return json.loads(body)


def test_dashboard_api_shows_prediction_attrs(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    sampler = DeepEnsembleSampler(seed=0, n_startup_trials=3)
    study = optuna.create_study(storage=storage, sampler=sampler, study_name="dash")
    study.optimize(lambda t: (t.suggest_float("x", -1, 1) - 0.3) ** 2, n_trials=6)

    app = optuna_dashboard.wsgi(optuna.storages.RDBStorage(storage))
    data = _get(app, f"/api/studies/{study._study_id}")
    last = {attr["key"]: attr["value"] for attr in data["trials"][-1]["user_attrs"]}
    assert last["deepens_source"] == "model"
    # One float: the GP scores, with log EI on its posterior (the kernel's default).
    assert last["deepens_acquisition_function"] == "ei"
    assert float(last["deepens_predicted_std"]) > 0
    shown = {attr["key"] for attr in data["union_user_attrs"]}
    assert {"deepens_predicted_mean", "deepens_acquisition"} <= shown


SERVE = (
    "import sys, optuna_dashboard as d; "
    "d.run_server(sys.argv[1], host='127.0.0.1', port=int(sys.argv[2]))"
)


def _figure_study(storage: str) -> optuna.Study:
    """A finished study with the attrs the figures read: predictions and latencies."""
    study = optuna.create_study(storage=storage, study_name="figures", direction="maximize")
    distribution = optuna.distributions.IntDistribution(0, 9)
    for i in range(8):
        attrs = {"zc_latency_ms": 1.0 + i % 4, "deepens_source": "model"}
        if i >= 2:
            attrs |= {"deepens_predicted_mean": 0.5 + 0.04 * i, "deepens_predicted_std": 0.05}
        study.add_trial(
            optuna.trial.create_trial(
                params={"x": i},
                distributions={"x": distribution},
                value=0.5 + 0.05 * i,
                user_attrs=attrs,
            )
        )
    return study


def test_pareto_set_keeps_the_cheapest_for_each_level_of_quality() -> None:
    points = [(1.0, 0.5), (2.0, 0.7), (2.0, 0.6), (3.0, 0.65), (4.0, 0.9), (1.0, 0.4)]
    assert pareto_set(points) == {0, 1, 4}


def test_figures_render_in_optuna_dashboard_in_a_headless_browser(tmp_path: Path) -> None:
    """The saved figures as a user sees them: optuna-dashboard's page in Chromium."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = _figure_study(storage)
    DashboardFigures(every=1)(study, study.trials[-1])
    saved = _get(
        optuna_dashboard.wsgi(optuna.storages.RDBStorage(storage)),
        f"/api/studies/{study._study_id}",
    )
    assert saved  # The API answers; the page below is what matters.

    browser_path = shutil.which("chromium") or "/usr/bin/chromium"
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(browser_path).exists():
        if os.environ.get("DEEPENS_REQUIRE_BROWSER") == "1":
            pytest.fail("Debian's chromium is missing: apt-get install chromium")
        pytest.skip("no Chromium here (apt-get install chromium)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-c", SERVE, storage, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/dashboard/studies/{study._study_id}"
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=browser_path,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            page = browser.new_page(viewport={"width": 1400, "height": 2400})
            for _ in range(100):  # The server takes a moment to start.
                try:
                    page.goto(url, timeout=5000)
                    break
                except playwright.Error:
                    time.sleep(0.2)
            page.get_by_text("prediction before training").first.wait_for(timeout=30000)
            page.get_by_text("Value against latency_ms").first.wait_for(timeout=30000)
            assert page.locator(".js-plotly-plot").count() >= 2
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_multi_objective_study_shows_its_front_in_the_dashboard(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'mo.db'}"
    sampler = DeepEnsembleSampler(seed=0, n_startup_trials=4)
    study = optuna.create_study(
        storage=storage, sampler=sampler, directions=["maximize", "minimize"]
    )

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        width = trial.suggest_int("width", 1, 16)
        depth = trial.suggest_int("depth", 1, 8)
        latency = 0.1 * width * depth
        trial.set_user_attr("zc_latency_ms", latency)
        return float(width + depth) ** 0.5, latency

    study.optimize(objective, n_trials=10, callbacks=[DashboardFigures(every=5)])
    app = optuna_dashboard.wsgi(optuna.storages.RDBStorage(storage))
    data = _get(app, f"/api/studies/{study._study_id}")
    assert len(data["best_trials"]) >= 1  # The dashboard's Pareto front.
    last = {attr["key"]: attr["value"] for attr in data["trials"][-1]["user_attrs"]}
    assert last["deepens_acquisition_function"] == "ei"
    assert {"deepens_predicted_mean", "deepens_predicted_mean_1"} <= set(last)
    # Both figures were saved (keys hold the graph object ids), from the first objective.
    keys = " ".join(study._storage.get_study_system_attrs(study._study_id))
    assert "deepens-prediction" in keys and "deepens-pareto" in keys


def test_without_plotly_the_callback_warns_and_the_study_goes_on(monkeypatch) -> None:
    # optuna-dashboard does not depend on plotly: the callback must not end the study then.
    monkeypatch.setitem(sys.modules, "plotly.graph_objects", None)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    with pytest.warns(UserWarning, match="needs optuna-dashboard and plotly"):
        study.optimize(
            lambda t: t.suggest_float("x", 0, 1), n_trials=4, callbacks=[DashboardFigures(every=2)]
        )
    assert len(study.trials) == 4


@pytest.mark.parametrize(
    ("options", "match"), [({"every": 0}, "at least 1"), ({"metric": "latency"}, "choose one of")]
)
def test_bad_figure_options_are_refused(options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DashboardFigures(**options)
