"""Data-parallel training: `torchrun --nproc_per_node 2 -m pipelines.cli train` on CPU (gloo)
gives the model one process trains, and only rank 0 logs to MLflow and writes files."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from pipelines import stages
from pipelines.config import load_params
from pipelines.files import ProjectPaths
from tests.conftest import tiny_params_dict, write_params
from tests.helpers import command_env, run
from tests.pg_support import free_port

pytestmark = pytest.mark.slow

TORCHRUN = ["torchrun", "--nproc_per_node", "2", "-m", "pipelines.cli"]


def tabular_project(root: Path) -> Path:
    """A files-source table (no missing labels, so each process's mean loss is the global
    one) for an MLP without dropout or BatchNorm: DDP should change nothing at all."""
    rng = np.random.default_rng(0)
    n = 236  # 140 train rows: every batch of 32 (and the last, 12) splits evenly in two
    x = rng.normal(size=(n, 3))
    frame = pd.DataFrame(x, columns=["a", "b", "c"])
    frame["kind"] = np.digitize(x[:, 0] + 0.5 * x[:, 1], [-0.5, 0.5])
    frame["value"] = 2 * x[:, 2] - x[:, 1] + rng.normal(scale=0.1, size=n)
    (root / "data" / "table").mkdir(parents=True)
    frame.to_csv(root / "data" / "table" / "rows.csv", index=False)
    params = {
        "data": {
            "source": "files",
            "dir": "data/table",
            "table": "rows.csv",
            "inputs": {"x": {"kind": "features", "numeric": ["a", "b", "c"]}},
        },
        "tasks": {
            "kind": {"kind": "classification", "n_classes": 3},
            "value": {"kind": "regression"},
        },
        "augment": {"enabled": False},
        "model": {
            "backbone": {"name": "mlp", "width": 8, "depth": 2},
            "head_hidden": 16,
            "dropout": 0.0,
        },
        "train": {"epochs": 3, "batch_size": 32, "patience": None, "affinity": {"enabled": True}},
        "tune": {"enabled": False},
        "register": {"model_name": "ddp-tabular"},
        "tracking": {"uri": f"sqlite:///{root / 'mlflow.db'}", "experiment": "ddp"},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    loaded, paths = load_params(root / "params.yaml"), ProjectPaths(root)
    for stage in ("prepare", "split", "tune"):
        getattr(stages, stage)(loaded, paths)
    return root


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tabular_project(tmp_path_factory.mktemp("ddp") / "template")


def copy_of(template: Path, dest: Path) -> Path:
    """The prepared project at ``dest``, its MLflow store its own."""
    shutil.copytree(template, dest)
    params = dest / "params.yaml"
    params.write_text(params.read_text().replace(str(template), str(dest)))
    return dest


def train_runs(root: Path) -> list:
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    return mlflow.search_runs(
        experiment_names=["ddp"],
        filter_string="tags.`mtlflow.stage` = 'train'",
        output_format="list",
    )


@pytest.mark.parametrize(
    "architecture",
    [[], ["--set", "model.architecture.name=mmoe", "--set", "model.shared_depth=1"]],
    ids=["hps", "mmoe"],
)
def test_two_gloo_processes_train_the_one_process_model(template, tmp_path, architecture):
    """Hard sharing, and a gated mixture (experts, gates: every parameter in every step)."""
    single, ddp = copy_of(template, tmp_path / "single"), copy_of(template, tmp_path / "ddp")

    one = run(["mtlflow", "train", *architecture], single)
    assert one.returncode == 0, one.stderr[-3000:]
    two = run([*TORCHRUN, "train", *architecture], ddp)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-10000:]
    assert "x 2 processes (DDP)" in two.stdout
    assert "no task affinity under DDP" in two.stdout

    a = torch.load(single / "models" / "model.pt", weights_only=True)
    b = torch.load(ddp / "models" / "model.pt", weights_only=True)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=key)
    score_one = json.loads((single / "models" / "run.json").read_text())["best_val_score"]
    score_two = json.loads((ddp / "models" / "run.json").read_text())["best_val_score"]
    assert score_two == pytest.approx(score_one, abs=1e-6)
    # rank 0 alone logged one training run with its per-epoch metrics
    (logged,) = train_runs(ddp)
    history = mlflow.MlflowClient().get_metric_history(logged.info.run_id, "val/score")
    assert [m.step for m in history] == [1, 2, 3]


@pytest.mark.parametrize(
    "weighting",
    [
        "uw",  # learned weights: trained from the processes' mean losses
        "famo",  # its own Adam, stepped on the mean losses after the step
        "upgrad",  # per-task Jacobian rows averaged before the Gramian
        "{method: upgrad, level: features}",  # the features' Gramian averaged
    ],
)
def test_every_weighting_trains_the_one_process_model_under_ddp(template, tmp_path, weighting):
    """Nothing is refused under torchrun: loss-based methods see the processes' mean
    losses and gradient methods the whole batch's task gradients, so two gloo processes
    train the model one process does."""
    single, ddp = copy_of(template, tmp_path / "single"), copy_of(template, tmp_path / "ddp")
    key = "train.weighting" if weighting.startswith("{") else "train.weighting.method"
    chosen = ["--set", f"{key}={weighting}"]
    one = run(["mtlflow", "train", *chosen], single)
    assert one.returncode == 0, one.stderr[-3000:]
    two = run([*TORCHRUN, "train", *chosen], ddp)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-10000:]
    a = torch.load(single / "models" / "model.pt", weights_only=True)
    b = torch.load(ddp / "models" / "model.pt", weights_only=True)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=key)
    (logged,) = train_runs(ddp)
    history = mlflow.MlflowClient().get_metric_history(logged.info.run_id, "val/score")
    one_run = train_runs(single)[0]
    expected = mlflow.MlflowClient().get_metric_history(one_run.info.run_id, "val/score")
    assert [m.value for m in history] == pytest.approx([m.value for m in expected], abs=1e-6)


def test_other_stages_refuse_to_run_under_torchrun(template, tmp_path):
    project = copy_of(template, tmp_path / "p")
    result = run([*TORCHRUN, "split"], project)
    assert result.returncode != 0
    assert "`split` does not run under torchrun" in result.stdout + result.stderr


def test_a_zoo_backbone_split_at_a_module_trains_the_same_under_ddp(tmp_path):
    """SqueezeNet 1.1 split at fire8 trains under two gloo processes from the one-process
    model's start. (Unlike the MLP above the weights are not equal to 1e-5: at a fresh deep
    net's near-zero gradients, Adam's normalised step turns summation-order noise into
    steps of up to lr either way, so the bound is two Adam steps per batch.)"""
    template = tmp_path / "template"
    template.mkdir()
    raw = tiny_params_dict(template)
    raw["data"]["synthetic"]["n_samples"] = 128  # 74 train rows: batches 32, 32, 10 halve
    raw["model"] = {
        "backbone": {"name": "torchvision/squeezenet1_1"},
        "shared_depth": "features.11",
        "head_hidden": 16,
        "dropout": 0.0,
    }
    raw["augment"]["enabled"] = False
    raw["tune"]["enabled"] = False
    raw["train"] |= {"epochs": 1, "batch_size": 32, "affinity": {"enabled": False}}
    raw["tracking"]["experiment"] = "ddp"
    loaded, paths = load_params(write_params(template, raw)), ProjectPaths(template)
    for stage in ("prepare", "split"):
        getattr(stages, stage)(loaded, paths)
    single, ddp = copy_of(template, tmp_path / "single"), copy_of(template, tmp_path / "ddp")

    one = run(["mtlflow", "train"], single)
    assert one.returncode == 0, one.stderr[-3000:]
    two = run([*TORCHRUN, "train"], ddp)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-10000:]
    a = torch.load(single / "models" / "model.pt", weights_only=True)
    b = torch.load(ddp / "models" / "model.pt", weights_only=True)
    assert a.keys() == b.keys()
    bound = 2 * loaded.train.lr * 3 * 1.05  # 3 batches (32, 32, 10) in the one epoch
    for key in a:
        apart = (b[key].float() - a[key].float()).abs().max().item()
        assert apart <= bound, (key, apart)
    assert "x 2 processes (DDP)" in two.stdout


def test_two_nodes_on_loopback_train_the_one_process_model(template, tmp_path):
    """`torchrun --nnodes 2 --rdzv_backend c10d`: two "machines" (two project copies, one
    process each, gloo over loopback) train the one-process model; one of them, rank 0,
    writes models/ and logs the run."""
    single = copy_of(template, tmp_path / "single")
    nodes = [copy_of(template, tmp_path / f"node{i}") for i in (0, 1)]
    one = run(["mtlflow", "train"], single)
    assert one.returncode == 0, one.stderr[-3000:]

    endpoint = f"127.0.0.1:{free_port()}"
    rendezvous = ["--rdzv_backend", "c10d", "--rdzv_endpoint", endpoint, "--rdzv_id", "mtlflow"]
    launches = [
        subprocess.Popen(
            [
                "torchrun",
                "--nnodes",
                "2",
                "--nproc_per_node",
                "1",
                "--node_rank",
                str(i),
                *rendezvous,
                "-m",
                "pipelines.cli",
                "train",
            ],
            cwd=node,
            env=command_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i, node in enumerate(nodes)
    ]
    outputs = [launch.communicate(timeout=600)[0] for launch in launches]
    for launch, out in zip(launches, outputs, strict=True):
        assert launch.returncode == 0, out[-5000:]
    written = [node for node in nodes if (node / "models" / "model.pt").exists()]
    assert len(written) == 1, "rank 0 alone writes models/"
    assert any("x 2 processes (DDP)" in out for out in outputs)
    a = torch.load(single / "models" / "model.pt", weights_only=True)
    b = torch.load(written[0] / "models" / "model.pt", weights_only=True)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=key)
