"""The deployed pipeline end to end: a real Prefect server on a free loopback port,
`mtlflow deploy`, a process worker and `prefect deployment run ... --watch`, in a real git +
DVC project with tiny params. Every process the test starts is stopped at the end."""

from __future__ import annotations

import re
import shutil
import subprocess
from uuid import UUID

import mlflow
import pytest

from tests.conftest import REPO
from tests.helpers import copy_project
from tests.pipelines.prefect_support import (
    PREFECT,
    background,
    flow_run_artifacts,
    flow_run_logs,
    prefect_server,
    read_flow_run,
    tail,
)
from tests.pipelines.prefect_support import prefect_env as env_of

pytestmark = pytest.mark.slow

OVERRIDES = '{"tune.enabled": false, "train.epochs": 1}'


def test_deployment_run_drives_the_pipeline_to_a_registered_model(tmp_path):
    project = copy_project(tmp_path / "project")
    for name in ("prefect.yaml", "prefect.toml"):
        shutil.copy2(REPO / name, project / name)
    prefect_env = env_of(tmp_path / "prefect-home")
    api = prefect_env["PREFECT_API_URL"]
    logs = tmp_path / "logs"

    with prefect_server(prefect_env, logs) as server:
        deployed = subprocess.run(
            ["mtlflow", "deploy"], cwd=project, env=prefect_env,
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
        assert "work pool 'mtlflow-local' (process) created" in deployed.stdout
        assert "prefect worker start --pool mtlflow-local" in deployed.stdout

        worker_cmd = [PREFECT, "worker", "start", "--pool", "mtlflow-local"]
        with background(worker_cmd, prefect_env, logs / "worker.log") as worker:
            triggered = subprocess.run(
                [PREFECT, "deployment", "run", "mtl-pipeline/default",
                 "--param", f"overrides={OVERRIDES}", "--watch", "--watch-timeout", "480"],
                cwd=tmp_path, env=prefect_env, capture_output=True, text=True, timeout=540,
            )  # fmt: skip
        assert triggered.returncode == 0, triggered.stdout[-3000:] + tail(logs / "worker.log")
        assert "Flow run finished successfully in 'Completed'" in triggered.stdout
        found = re.search(r"UUID: ([0-9a-f-]{36})", triggered.stdout)
        assert found, triggered.stdout
        flow_run_id = UUID(found.group(1))

        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: api}):
            flow_run = read_flow_run(flow_run_id)
            with get_client(sync_client=True) as client:
                for name in ("mtl-pipeline/default", "tune/default", "train/default"):
                    assert client.read_deployment_by_name(name).work_pool_name == "mtlflow-local"
            artifacts = flow_run_artifacts(flow_run_id)
            logs_text = flow_run_logs(flow_run_id, "epoch   1", "is now @champion")
    assert server.poll() is not None and worker.poll() is not None  # both stopped

    assert flow_run.state.is_completed()
    assert flow_run.parameters["overrides"] == {"tune.enabled": False, "train.epochs": 1}
    assert {"mtlflow-model-report", "mtlflow-test-metrics"} <= set(artifacts)
    assert "Running stage 'split'" in logs_text and "epoch   1" in logs_text
    assert "tune: skipped (tune.enabled is false)" in logs_text

    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    (version,) = client.search_model_versions("name = 'tiny-defects'")
    run = client.get_run(version.run_id)
    assert run.data.tags["prefect.flow_run.id"] == str(flow_run_id)
    assert run.data.tags["prefect.deployment"] == "mtl-pipeline/default"
    assert f"[version {version.version}]" in artifacts["mtlflow-model-report"].data
