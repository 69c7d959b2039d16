"""What optuna-dashboard shows users: why each model-chosen trial was picked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import optuna
import optuna_dashboard

from optuna_deepens import DeepEnsembleSampler


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
    assert last["deepens_acquisition_function"] == "ts"
    assert float(last["deepens_predicted_std"]) > 0
    shown = {attr["key"] for attr in data["union_user_attrs"]}
    assert {"deepens_predicted_mean", "deepens_acquisition"} <= shown
