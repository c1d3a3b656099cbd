"""The label audit on the defect data, and where its verdicts go.

A probe (the pipeline's own model, trained without augmentation) reads the generator's real
defect images. Where no task declares the horizontal flip, the flip without its left/right
remap is flagged for the side tasks; with the remap it passes, and the vertical flip (regions
are vertical strips) is never flagged. Then: ``reports/augmentation.json``, the printed lines
of ``mtlflow augment``, the MLflow run and the diagnosis.
"""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest

from mtl_models.augment.effects import task_sensitivity
from mtl_models.augment.policy import TransformRequest, resolve_policy
from mtl_models.inputs import ImageInput
from mtl_models.metrics import task_metrics
from mtl_models.tasks import TaskSpec
from pipelines import stages, tracking
from pipelines.config import overlay, parse_params
from pipelines.data.sources.synthetic_defects import generate_defect_dataset
from pipelines.data.splits import load_split
from pipelines.services.augmentation import (
    augmentation_report,
    log_augmentation,
    resolve_augmentation,
)
from pipelines.services.diagnosis import find_issues
from pipelines.services.diagnosis_report import diagnosis_markdown
from pipelines.services.label_audit import audit_note, audit_with_probe, train_probe
from tests.conftest import tiny_params_dict

SIZE, N_SAMPLES, PROBE_EPOCHS = 32, 400, 8
FLIPS = [
    TransformRequest("HorizontalFlip", "geometric", {"p": 0.5}),
    TransformRequest("VerticalFlip", "geometric", {"p": 0.5}),
    TransformRequest("GaussNoise", "noise_blur", {"p": 0.3, "std_range": (0.01, 0.03)}),
]
FLIP_SWAP = {"HorizontalFlip": {"*_left": "*_right", "*_right": "*_left"}}


@pytest.fixture(scope="module", params=[0, 1])
def defect_probe(request, tmp_path_factory):
    """A probe on 400 generated defect images at 32 px (240 to train, 160 to audit), seed by
    seed: a 16-wide 3-block ConvNet, 8 epochs (it reaches QWK ~0.9 on scratches)."""
    raw = tiny_params_dict(tmp_path_factory.mktemp("audit"))
    raw["data"]["synthetic"] |= {"n_samples": N_SAMPLES, "image_size": SIZE}
    raw["model"] |= {
        "backbone": {"name": "cnn", "width": 16, "depth": 3},
        "shared_depth": 3,
        "head_hidden": 32,
    }
    raw["train"] |= {"lr": 0.003}
    raw["augment"]["audit"] = {"enabled": True, "epochs": PROBE_EPOCHS, "seed": request.param}
    params = parse_params(raw)
    images, ratings = generate_defect_dataset(N_SAMPLES, SIZE, seed=7)
    images, labels = images[..., None], ratings.astype(np.float32)
    cut = int(0.6 * N_SAMPLES)
    train = ({"image": images[:cut]}, labels[:cut])
    val = ({"image": images[cut:]}, labels[cut:])
    fitted = train_probe(params, train, val, [ImageInput("image", SIZE, 1)])
    return params, fitted, train, val


def audit_flips(defect_probe, remaps):
    params, fitted, train, val = defect_probe
    # no task declares the flips: the kinds' defaults know nothing of left and right
    silent = {t.name: task_sensitivity(t.kind) for t in params.task_specs()}
    policy = resolve_policy(FLIPS, silent, remaps, image_size=SIZE)
    assert [d.name for d in policy.kept] == [r.name for r in FLIPS]
    return audit_with_probe(params, fitted, policy, train[1], val).by_name()


def test_a_horizontal_flip_without_its_remap_is_flagged_for_side_tasks_only(defect_probe):
    audited = audit_flips(defect_probe, {})
    flip = audited["HorizontalFlip"]
    assert len(flip.flagged) >= 2, flip.verdict
    assert all(not t.endswith("_center") for t in flip.flagged)  # the centre stays in place
    worst = flip.tasks[flip.flagged[0]]
    assert worst.bound > 0.15 * worst.skill and worst.clean > 0.7
    assert audited["VerticalFlip"].flagged == [], audited["VerticalFlip"].verdict


def test_with_its_remap_the_flip_keeps_labels_as_do_vertical_flips_and_light_noise(
    defect_probe,
):
    audited = audit_flips(defect_probe, FLIP_SWAP)
    for name in ("HorizontalFlip", "VerticalFlip", "GaussNoise"):
        assert audited[name].flagged == [], audited[name].verdict
        assert audited[name].verdict.startswith("no task's score drops beyond noise")
    assert audited["HorizontalFlip"].remap["scratches_left"] == "scratches_right"


# ----------------------------------------------------------------- where verdicts go


@pytest.fixture
def split_project(project):
    params, paths = project
    stages.prepare(params, paths)
    stages.split(params, paths)
    return overlay(params, {"augment.audit.enabled": True, "augment.audit.epochs": 1}), paths


def test_audit_is_off_by_default_and_says_how_to_run_it(project):
    params, _ = project
    policy = resolve_augmentation(params)
    assert audit_note(params, policy).startswith("off (`--set augment.audit.enabled=true`")
    report = augmentation_report(policy, None, audit_note(params, policy))
    assert report["audit"]["note"].startswith("off")
    assert all(e["audit"]["verdict"] == "not audited" for e in report["kept"])


def test_mtlflow_augment_prints_and_writes_the_audit(split_project, capsys):
    params, paths = split_project
    policy = stages.augment(params, paths)
    out = capsys.readouterr().out
    kept = [d.name for d in policy.kept]
    assert "label audit: probe: the configured model, 1 epochs without augmentation" in out
    for name in kept:
        assert f" {name}: " in out.split("label audit:")[1]
    report = json.loads((paths.reports_dir / "augmentation.json").read_text())
    assert [t["name"] for t in report["audit"]["transforms"]] == kept
    assert set(report["audit"]["seconds"]) == {"probe", "audit"}
    flip = report["kept"][0]
    assert flip["name"] == "HorizontalFlip" and flip["reason"].startswith("kept with label remap")
    assert flip["audit"]["verdict"] == report["audit"]["transforms"][0]["verdict"]
    row = report["audit"]["transforms"][0]["tasks"]["scratches_left"]
    assert row["metric"] == "qwk" and {"clean", "transformed", "drop", "bound"} <= set(row)


def test_the_training_run_logs_the_audit(split_project):
    params, paths = split_project
    tasks = params.task_specs()
    policy = resolve_augmentation(params)
    with tracking.training_run(params, paths.root, "audit") as run:
        log_augmentation(params, policy, tasks, load_split(paths, "train", tasks), paths)
    logged = mlflow.MlflowClient().get_run(run.info.run_id).data
    report = json.loads((paths.reports_dir / "augmentation.json").read_text())
    summary = logged.tags["mtlflow.augment_audit"]
    assert summary.endswith(f"; {len(policy.kept)} audited")
    assert summary.startswith("flagged " if report["audit"]["flagged"] else "no transform flagged")
    assert not any(key.startswith("augment/audit") for key in logged.metrics)


def flagged_report() -> dict:
    """``reports/augmentation.json`` with a horizontal flip flagged for two tasks."""
    row = {"clean": 0.9, "transformed": 0.55, "drop": 0.35, "bound": 0.3, "flagged": True}
    return {
        "enabled": True,
        "audit": {
            "probe": "probe: the configured model, 5 epochs without augmentation",
            "criterion": "flagged where ...",
            "flagged": ["HorizontalFlip"],
            "transforms": [
                {
                    "name": "HorizontalFlip",
                    "effects": {"hflip": 1.0},
                    "remap": {},
                    "flagged": ["a_right", "a_left"],
                    "tasks": {"a_left": row, "a_right": row | {"transformed": 0.5}},
                },
                {"name": "VerticalFlip", "effects": {}, "remap": {}, "flagged": [], "tasks": {}},
            ],
        },
    }


def two_tasks() -> tuple[list[TaskSpec], np.ndarray, np.ndarray, dict]:
    tasks = [
        TaskSpec("a_left", "classification", classes=("red", "pink", "white")),
        TaskSpec("a_right", "ordinal", n_classes=3),
    ]
    labels = np.tile(np.array([[0, 0], [1, 1], [2, 2]], float), (10, 1))
    predictions = np.zeros_like(labels)  # both collapse on their first class
    per_task = {
        t.name: task_metrics(t, labels[:, i], predictions[:, i], 0.0) for i, t in enumerate(tasks)
    }
    return tasks, labels, predictions, per_task


def test_the_diagnosis_reports_a_flagged_transform_and_names_classes():
    tasks, labels, predictions, per_task = two_tasks()
    findings = find_issues(
        tasks, per_task, labels, predictions, labels, "equal", augmentation=flagged_report()
    )
    (flip,) = [f for f in findings if f.task == "HorizontalFlip"]
    assert flip.text.startswith(
        "(augmentation) changes labels: the label audit's probe scores a_right 0.90 -> 0.50, "
        "a_left 0.90 -> 0.55 on the validation images without and with it (beyond noise)"
    )
    assert "`sensitive_to: [hflip]` for a_right, a_left" in flip.text
    assert "`augment.remaps.HorizontalFlip`" in flip.text
    texts = {f.task: f.text for f in findings}
    assert texts["a_left"].startswith("has collapsed: it predicts class 'red' for 100%")
    assert texts["a_right"].startswith("has collapsed: it predicts class 0 for 100%")
    metrics = {"tasks": per_task, "summary": {"mean_score": 0.0, "tasks_beating_majority": []}}
    metrics["summary"]["collapsed_tasks"] = ["a_left", "a_right"]
    markdown = diagnosis_markdown(
        tasks, metrics, labels, predictions, labels, "equal", "run", None, flagged_report()
    )
    assert "2 kept transforms audited, flagged: HorizontalFlip." in markdown
    assert "- **HorizontalFlip** (augmentation) changes labels" in markdown
