"""``mtlflow train`` SIGKILLed at a random epoch and run again continues from its checkpoint,
into the same MLflow run, and ends with the weights of a training never interrupted
(issue 18, item 9)."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml
from mlflow import MlflowClient

from pipelines.files import ProjectPaths
from tests.conftest import tiny_params_dict, write_params
from tests.helpers import command_env, copy_project, run

EPOCHS = 10


def _project(root: Path) -> Path:
    copy_project(root)
    raw = tiny_params_dict(root)
    raw["data"]["synthetic"] |= {"n_samples": 400}
    raw["train"] |= {"epochs": EPOCHS, "patience": None}
    raw["train"]["affinity"]["enabled"] = False
    write_params(root, raw)
    for stage in ("prepare", "split"):
        result = run(["mtlflow", stage], root)
        assert result.returncode == 0, result.stdout + result.stderr
    return root


def _checkpoint_epoch(path: Path) -> int:
    try:
        return int(torch.load(path, weights_only=True)["trainer"]["epoch"])
    except (FileNotFoundError, RuntimeError, EOFError, KeyError):
        return 0


def _weights(root: Path) -> dict[str, torch.Tensor]:
    return torch.load(root / "models" / "model.pt", weights_only=True)


@pytest.mark.slow
def test_train_killed_at_a_random_epoch_resumes_to_the_same_weights(tmp_path: Path) -> None:
    whole = _project(tmp_path / "whole")
    result = run(["mtlflow", "train"], whole)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not ProjectPaths(whole).train_checkpoint.exists()  # deleted once models/ is written

    killed = _project(tmp_path / "killed")
    checkpoint = ProjectPaths(killed).train_checkpoint
    at = random.Random().randint(1, EPOCHS - 3)
    process = subprocess.Popen(
        ["mtlflow", "train"], cwd=killed, env=command_env(), stdout=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 300
    while _checkpoint_epoch(checkpoint) < at and process.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint written"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    done = _checkpoint_epoch(checkpoint)
    assert at <= done < EPOCHS, f"killed after epoch {done}, aimed at {at}"
    assert not (killed / "models" / "model.pt").exists()

    again = run(["mtlflow", "train"], killed)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"train: resuming after epoch {done} of {EPOCHS}" in again.stdout
    assert not checkpoint.exists()

    expected, resumed = _weights(whole), _weights(killed)
    assert expected.keys() == resumed.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=1e-5, atol=1e-6, msg=name)

    params = yaml.safe_load((killed / "params.yaml").read_text())
    client = MlflowClient(params["tracking"]["uri"])
    experiment = client.get_experiment_by_name(params["tracking"]["experiment"])
    runs = client.search_runs([experiment.experiment_id], "tags.`mtlflow.stage` = 'train'")
    assert len(runs) == 1, "the resumed training continues the interrupted run"
    (train_run,) = runs
    assert train_run.info.status == "FINISHED"
    assert train_run.data.tags["mtlflow.resumed_after_epoch"] == str(done)
    assert "mtlflow.end_reason" not in train_run.data.tags
    steps = {m.step for m in client.get_metric_history(train_run.info.run_id, "val/score")}
    assert steps == set(range(1, EPOCHS + 1))


@pytest.mark.slow
def test_train_resume_false_starts_over(tmp_path: Path) -> None:
    root = _project(tmp_path / "p")
    checkpoint = ProjectPaths(root).train_checkpoint
    process = subprocess.Popen(
        ["mtlflow", "train"], cwd=root, env=command_env(), stdout=subprocess.PIPE, text=True
    )
    while _checkpoint_epoch(checkpoint) < 1 and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert checkpoint.exists()

    fresh = run(
        ["mtlflow", "train", "--set", "train.resume=false", "--set", "train.epochs=2"], root
    )
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert "resuming" not in fresh.stdout
    assert "epoch   1" in fresh.stdout
