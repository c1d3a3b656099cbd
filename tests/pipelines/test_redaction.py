"""No secret reaches a log, an MLflow param or a report: a password in a storage or tracking
URL is masked wherever mtlflow records or prints it (issue 18, item 2)."""

from __future__ import annotations

import pytest
import yaml
from mlflow import MlflowClient

from pipelines import stages, tracking
from pipelines.config import load_params
from pipelines.redaction import redact
from tests.helpers import run

SECRET = "s3cret"
STORAGE = f"postgresql://bob:{SECRET}@127.0.0.1:9/optuna"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (STORAGE, "postgresql://bob:***@127.0.0.1:9/optuna"),
        ("https://user:tok@en@server/x", "https://user:***@server/x"),  # an @ in the password
        ("http://host/api?token=abc&x=1", "http://host/api?token=***&x=1"),
        (
            "see 'mysql://root:pw@db/x' and http://a:b@c/d",
            "see 'mysql://root:***@db/x' and http://a:***@c/d",
        ),
        ("sqlite:///optuna.db", "sqlite:///optuna.db"),
        ("postgresql://bob@host/db", "postgresql://bob@host/db"),  # no password: nothing to hide
    ],
)
def test_credentials_in_urls_are_masked(text: str, masked: str) -> None:
    assert redact(text) == masked


def test_flattened_params_hold_no_password() -> None:
    flat = tracking.flatten(
        {"tune": {"storage": STORAGE}, "augment": {"remaps": {"*_l": [STORAGE]}}}
    )
    assert flat["tune.storage"] == "postgresql://bob:***@127.0.0.1:9/optuna"
    assert SECRET not in str(flat)


@pytest.mark.slow
def test_a_training_run_logs_no_password_of_its_study_storage(project, capsys) -> None:
    params, paths = project
    stages.prepare(params, paths)
    stages.split(params, paths)
    params = load_params(paths.root / "params.yaml", [f"tune.storage={STORAGE}"])
    run_info = stages.train(params, paths)
    logged = MlflowClient(params.tracking.uri).get_run(run_info["run_id"]).data
    assert logged.params["tune.storage"] == "postgresql://bob:***@127.0.0.1:9/optuna"
    assert SECRET not in str(logged.params) + str(logged.tags)
    assert SECRET not in capsys.readouterr().out


@pytest.mark.slow
def test_a_study_storage_that_cannot_open_is_reported_without_its_password(project) -> None:
    params, paths = project
    raw = yaml.safe_load((paths.root / "params.yaml").read_text())
    raw["tune"] |= {"enabled": True, "n_trials": 1}
    (paths.root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    stages.prepare(params, paths)
    stages.split(params, paths)
    result = run(["mtlflow", "tune", "--set", f"tune.storage={STORAGE}"], paths.root)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "error: tune.storage 'postgresql://bob:***@127.0.0.1:9/optuna'" in result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert not (paths.root / "reports" / "best_params.yaml").exists()
