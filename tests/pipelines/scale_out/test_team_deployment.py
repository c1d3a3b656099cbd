"""A team's whole layout, every part real: PostgreSQL, an MLflow server on it, a Prefect
server, a DVC remote (a local folder) and two Prefect workers, each in its own git clone of the
project (standing in for two machines). `prefect deployment run 'tune/default'` twice at once:
both flow runs pull the split with `dvc pull` and tune one study; then the whole pipeline, and
the registered model serves from the server's registry (issue 22)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from uuid import UUID

import numpy as np
import optuna
import pytest
import yaml
from mlflow import MlflowClient
from prefect.settings import PREFECT_API_URL, temporary_settings

from pipelines.services.study import FINISHED
from pipelines.serving import encode_png
from tests.conftest import REPO, tiny_params_dict, write_params
from tests.helpers import copy_project, run
from tests.pg_support import create_database, postgres_cluster
from tests.pipelines.prefect_support import (
    PREFECT,
    background,
    flow_run_logs,
    prefect_env,
    prefect_server,
    read_flow_run,
    tail,
)
from tests.scale_out_support import tracking_server
from tests.serving_support import invoke, served_process

pytestmark = pytest.mark.slow

N_TRIALS = 6
WATCH_S = 540


def git_commit(root: Path, message: str) -> None:
    for cmd in (
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message],
    ):
        done = run(cmd, root)
        assert done.returncode == 0, done.stdout + done.stderr


def deployer_project(root: Path, tracking_uri: str, study_url: str, remote: Path) -> Path:
    """The project the team deploys from: its data reproduced, committed and pushed."""
    copy_project(root)
    for name in ("prefect.yaml", "prefect.toml"):
        shutil.copy2(REPO / name, root / name)
    raw = tiny_params_dict(root)
    raw["tracking"]["uri"] = tracking_uri
    raw["tune"] |= {"storage": study_url, "n_trials": N_TRIALS, "epochs": 3}
    write_params(root, raw)
    for cmd in (
        ["dvc", "remote", "add", "-d", "team", str(remote)],
        ["dvc", "repro", "split"],
    ):
        done = run(cmd, root)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    git_commit(root, "the team's project: params, dvc.lock, the remote")
    pushed = run(["dvc", "push"], root)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    return root


def start_runs(deployment: str, env: dict[str, str], count: int) -> list[UUID]:
    """``prefect deployment run DEPLOYMENT --watch``, ``count`` times at once; their ids."""
    cmd = [PREFECT, "deployment", "run", deployment, "--watch", "--watch-timeout", str(WATCH_S)]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(count)
    ]
    ids = []
    for proc in procs:
        out = proc.communicate(timeout=WATCH_S + 60)[0]
        assert proc.returncode == 0, out[-3000:]
        assert "Flow run finished successfully in 'Completed'" in out, out[-3000:]
        ids.append(UUID(re.search(r"UUID: ([0-9a-f-]{36})", out).group(1)))
    return ids


def test_two_workers_tune_one_study_then_the_pipeline_serves_from_the_registry(tmp_path):
    logs = tmp_path / "logs"
    env = prefect_env(tmp_path / "prefect-home")
    with (
        postgres_cluster() as pg,
        tracking_server(create_database(pg, "mlflow"), tmp_path / "artifacts") as server,
        prefect_server(env, logs),
    ):
        study_url = create_database(pg, "optuna")
        deployer = deployer_project(tmp_path / "deployer", server, study_url, tmp_path / "remote")
        deployed = run(["mtlflow", "deploy"], deployer, **env)
        assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
        assert "MTLFLOW_PROJECT_DIR=/path/to/clone prefect worker start" in deployed.stdout
        copies = {}
        for name in ("a", "b"):  # each worker's machine: a clone, no data yet
            copies[name] = tmp_path / f"worker-{name}"
            cloned = run(["git", "clone", "-q", str(deployer), str(copies[name])], tmp_path)
            assert cloned.returncode == 0, cloned.stderr
            assert not (copies[name] / "data/splits").exists()

        worker = [PREFECT, "worker", "start", "--pool", "mtlflow-local", "--limit", "1"]
        with (
            background(
                [*worker, "--name", "a"], env | {"MTLFLOW_PROJECT_DIR": str(copies["a"])},
                logs / "worker-a.log", cwd=copies["a"],
            ),
            background(
                [*worker, "--name", "b"], env | {"MTLFLOW_PROJECT_DIR": str(copies["b"])},
                logs / "worker-b.log", cwd=copies["b"],
            ),
        ):  # fmt: skip
            try:
                tune_runs = start_runs("tune/default", env, 2)
                (pipeline_run,) = start_runs("mtl-pipeline/default", env, 1)
            except AssertionError as failed:
                raise AssertionError(
                    f"{failed}\n{tail(logs / 'worker-a.log')}\n{tail(logs / 'worker-b.log')}"
                ) from None
            with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}):
                flow_runs = [read_flow_run(i) for i in (*tune_runs, pipeline_run)]
                tune_logs = [flow_run_logs(i, "tune: done") for i in tune_runs]
                pipeline_logs = flow_run_logs(pipeline_run, "mtl-pipeline: done")

        # the two tune runs ran at once, each in its own worker's copy, on the pulled split
        first, second = sorted(flow_runs[:2], key=lambda r: r.start_time)
        assert second.start_time < first.end_time, "the tune flow runs did not overlap"
        places = {c for c in copies.values() for text in tune_logs if f"tune: {c}," in text}
        assert places == set(copies.values()), tune_logs
        for root in copies.values():  # the pull step, in the flow run's logs
            pulled = f"MTLFLOW_PROJECT_DIR={root}: dvc pull prepare split"
            assert any(pulled in text for text in tune_logs), tune_logs
        lock = yaml.safe_load((deployer / "dvc.lock").read_text())
        (splits,) = [o for o in lock["stages"]["split"]["outs"] if o["path"] == "data/splits"]
        for text in [*tune_logs, pipeline_logs]:
            assert f"split: data/splits md5 {splits['md5']} (dvc.lock)" in text
        for root in copies.values():
            assert (root / "data/splits").is_dir()
            status = run(["dvc", "status", "split"], root)
            assert "up to date" in status.stdout, status.stdout + status.stderr

        # one study: exactly n_trials finished, each a nested run on the MLflow server
        (name,) = optuna.get_all_study_names(study_url)
        trials = optuna.load_study(study_name=name, storage=study_url).trials
        finished = [t for t in trials if t.state in FINISHED]
        shown = "\n".join(f"{t.number} {t.state.name} {t.user_attrs}" for t in trials)
        assert len(finished) == N_TRIALS and len(trials) == N_TRIALS, shown
        assert len({t.user_attrs["worker"] for t in finished}) == 2, shown  # both tuned

        client = MlflowClient(server)
        experiment = client.get_experiment_by_name("tests")
        runs = {r.info.run_id: r for r in client.search_runs([experiment.experiment_id])}
        trial_runs = [runs[t.user_attrs["mlflow_run_id"]] for t in finished]
        assert len({r.info.run_id for r in trial_runs}) == N_TRIALS  # none run twice
        flow_mlflow_runs = {r.data.tags.get("prefect.flow_run.id"): r for r in runs.values()}
        tune_parents = {
            run_id
            for run_id, r in runs.items()
            if r.data.tags.get("mtlflow.stage") == "tune"
            and r.data.tags.get("mlflow.parentRunId")
            in {flow_mlflow_runs[str(i)].info.run_id for i in tune_runs}
        }
        assert len(tune_parents) == 2
        for r in trial_runs:
            assert r.data.tags["mtlflow.stage"] == "tune-trial" and r.info.status == "FINISHED"
            assert r.data.tags["mlflow.parentRunId"] in tune_parents
        assert "tune: the study holds its" in pipeline_logs or "0 to run" in pipeline_logs

        # the pipeline registered its model on the server, and it serves from the registry
        champion = client.get_model_version_by_alias("tiny-defects", "champion")
        assert runs[champion.run_id].data.tags["prefect.flow_run.id"] == str(pipeline_run)
        with served_process("models:/tiny-defects@champion", server, tmp_path) as served:
            response = invoke(served.url, [{"image": encode_png(np.zeros((32, 32), np.uint8))}])
        assert response.ok, response.text
        assert len(response.json()["predictions"]) == 1
