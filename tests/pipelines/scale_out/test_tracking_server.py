"""A team's stores: every stage against a real `mlflow server` on PostgreSQL (artifacts
through its proxy) and an Optuna study on PostgreSQL; the registered model is served from
the server's registry (issue 22)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest
from mlflow import MlflowClient

from pipelines.serving import encode_png
from tests.conftest import tiny_params_dict, write_params
from tests.helpers import copy_project, run
from tests.pg_support import create_database, postgres_cluster
from tests.scale_out_support import tracking_server
from tests.serving_support import invoke, served_process

pytestmark = pytest.mark.slow


def test_the_pipeline_on_a_postgresql_tracking_server_and_study(tmp_path: Path) -> None:
    with postgres_cluster() as pg:
        store, study_url = create_database(pg, "mlflow"), create_database(pg, "optuna")
        with tracking_server(store, tmp_path / "artifacts") as server:
            project = copy_project(tmp_path / "project")
            raw = tiny_params_dict(project)
            raw["tracking"]["uri"] = server
            raw["tune"]["storage"] = study_url
            write_params(project, raw)

            doctor = run(["mtlflow", "doctor"], project)
            assert doctor.returncode == 0, doctor.stdout + doctor.stderr
            assert "MLflow server 3." in doctor.stdout and "(answers)" in doctor.stdout
            result = run(["mtlflow", "run"], project)
            assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]

            # nothing went to local files: runs, models and artifacts are the server's
            assert not (project / "mlruns").exists() and not (project / "mlflow.db").exists()
            assert any((tmp_path / "artifacts").rglob("MLmodel"))
            client = MlflowClient(server)
            experiment = client.get_experiment_by_name(raw["tracking"]["experiment"])
            runs = client.search_runs([experiment.experiment_id], max_results=100)
            stages = {r.data.tags.get("mtlflow.stage") for r in runs}
            assert stages == {"tune", "tune-trial", "train"}, stages  # evaluate: the train run's
            parent = next(r for r in runs if r.data.tags.get("mtlflow.stage") == "tune")
            trials = [
                r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
            ]
            assert len(trials) == raw["tune"]["n_trials"]
            assert all(r.info.status == "FINISHED" for r in runs)

            study = optuna.load_study(
                study_name=optuna.get_all_study_names(study_url)[0], storage=study_url
            )
            finished = [t for t in study.trials if t.state.is_finished()]
            assert len(finished) == raw["tune"]["n_trials"]

            name = raw["register"]["model_name"]
            champion = client.get_model_version_by_alias(name, "champion")
            assert champion.run_id in {r.info.run_id for r in runs}
            with served_process(f"models:/{name}@champion", server, project) as served:
                image = np.zeros((32, 32), np.uint8)
                response = invoke(served.url, [{"image": encode_png(image)}])
            assert response.ok, response.text
            assert len(response.json()["predictions"]) == 1
