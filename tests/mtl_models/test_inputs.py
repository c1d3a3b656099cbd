"""inputs: feature and signal encodings, the mlp/cnn1d/fusion backbones, multi-input models,
dict-input datasets and the alternating task schedule (units, plus one behavioural test)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mtl_models.inputs import (
    FeatureInput,
    ImageInput,
    SignalInput,
    input_from_dict,
    input_to_dict,
)
from mtl_models.metrics import summarize
from mtl_models.nn.backbones import MLP, ConvNet, ConvNet1d, Fusion
from mtl_models.nn.model import ModelSpec, build_backbone, build_model
from mtl_models.tasks import TaskSpec
from mtl_models.train.loaders import (
    AlternatingTaskBatches,
    MultiTaskDataset,
    make_loader,
    make_schedule_loader,
)
from mtl_models.train.prediction import predict, score_predictions
from mtl_models.train.trainer import Trainer
from mtl_models.weighting import build_weighting

NAN = float("nan")


# --- FeatureInput -------------------------------------------------------------------------


def fitted_features() -> FeatureInput:
    numeric = np.array([[1.0, 10.0], [2.0, 10.0], [3.0, 10.0], [NAN, 10.0]])
    categorical = np.array([["b", "x"], ["a", None], [None, "x"], ["a", "y"]], dtype=object)
    spec = FeatureInput("tab", ("length", "flat"), ("colour", "site"))
    return spec.fit(numeric, categorical)


def test_feature_fit_learns_mean_spread_and_sorted_categories_ignoring_missing() -> None:
    spec = fitted_features()
    assert spec.fitted
    assert spec.mean == pytest.approx((2.0, 10.0))  # the NaN is left out, not counted as 0
    assert spec.std == pytest.approx((math.sqrt(2 / 3), 1.0))  # a constant column keeps 1
    assert spec.categories == (("a", "b"), ("x", "y"))  # None is not a category
    assert spec.width == 2 + 2 + 2 and spec.shape == (6,)


def test_feature_encode_standardises_fills_missing_with_zero_and_one_hot_encodes() -> None:
    spec = fitted_features()
    numeric = np.array([[2.0, 10.0], [NAN, 12.0], [4.0, NAN]])
    categorical = np.array([["b", "y"], ["green", "x"], [None, None]], dtype=object)
    out = spec.encode(numeric, categorical)
    assert out.dtype == np.float32 and out.shape == (3, 6)
    s = math.sqrt(2 / 3)
    expected = np.array(
        [
            [0.0, 0.0, 0, 1, 0, 1],  # the mean encodes to 0
            [0.0, 2.0, 0, 0, 1, 0],  # missing -> 0 (the training mean); unseen 'green' -> zeros
            [2 / s, 0.0, 0, 0, 0, 0],  # missing categories -> all zeros
        ]
    )
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_feature_input_round_trips_through_json() -> None:
    spec = fitted_features()
    loaded = input_from_dict(json.loads(json.dumps(input_to_dict(spec))))
    assert loaded == spec and isinstance(loaded, FeatureInput)
    numeric = np.array([[1.5, 9.0]])
    categorical = np.array([["a", "y"]], dtype=object)
    np.testing.assert_array_equal(
        loaded.encode(numeric, categorical), spec.encode(numeric, categorical)
    )


def test_feature_input_only_categorical_or_only_numeric() -> None:
    cats = FeatureInput("c", categorical=("k",)).fit(
        np.empty((3, 0)), np.array([["p"], ["q"], ["p"]], dtype=object)
    )
    out = cats.encode(np.empty((2, 0)), np.array([["q"], ["r"]], dtype=object))
    np.testing.assert_array_equal(out, [[0, 1], [0, 0]])
    nums = FeatureInput("n", numeric=("v",)).fit(np.array([[0.0], [4.0]]), np.empty((2, 0)))
    np.testing.assert_allclose(nums.encode(np.array([[6.0]]), np.empty((1, 0))), [[2.0]])


def test_feature_input_refuses_to_encode_unfitted_or_fit_an_empty_column() -> None:
    spec = FeatureInput("tab", ("length",), ())
    with pytest.raises(ValueError, match="input 'tab': the encoding is not fitted"):
        spec.encode(np.zeros((1, 1)), np.empty((1, 0)))
    with pytest.raises(ValueError, match="feature 'length' has no values in the training split"):
        spec.fit(np.array([[NAN], [NAN]]), np.empty((2, 0)))


# --- SignalInput --------------------------------------------------------------------------


def test_signal_fit_standardises_each_channel_with_its_own_statistics() -> None:
    rng = np.random.default_rng(0)
    raw = np.stack(
        [rng.normal(5.0, 2.0, (20, 16)), rng.normal(-100.0, 0.1, (20, 16)), np.full((20, 16), 3.0)],
        axis=1,
    )
    spec = SignalInput("wave", ("a", "b", "flat"), 16).fit(raw)
    np.testing.assert_allclose(spec.mean, raw.mean(axis=(0, 2)))
    np.testing.assert_allclose(spec.std[:2], raw.std(axis=(0, 2))[:2])
    assert spec.std[2] == 1.0  # a constant channel is shifted, not divided by zero
    out = spec.encode(raw)
    assert out.dtype == np.float32 and out.shape == (20, 3, 16)
    np.testing.assert_allclose(out[:, :2].mean(axis=(0, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(out[:, :2].std(axis=(0, 2)), 1.0, atol=1e-5)
    np.testing.assert_array_equal(out[:, 2], 0.0)
    assert input_from_dict(json.loads(json.dumps(input_to_dict(spec)))) == spec


def test_signal_encode_rejects_another_shape() -> None:
    spec = SignalInput("wave", ("a", "b"), 16).fit(np.zeros((4, 2, 16)))
    with pytest.raises(ValueError, match=r"input 'wave': expected \[N, \(2, 16\)\]"):
        spec.encode(np.zeros((4, 2, 15)))


def run_backbone(backbone, x):
    return backbone.build_pool()(torch.nn.Sequential(*backbone.build_blocks())(x))


@pytest.mark.parametrize("depth", [1, 3])
def test_mlp_output_matches_out_features(depth: int) -> None:
    mlp = MLP(in_features=7, width=4, depth=depth)
    assert len(mlp.build_blocks()) == depth
    out = run_backbone(mlp, torch.rand(5, 7))
    assert out.shape == (5, mlp.out_features) == (5, 16)


@pytest.mark.parametrize(("depth", "length", "channels"), [(1, 16, 4), (3, 64, 16)])
def test_cnn1d_output_matches_out_features(depth: int, length: int, channels: int) -> None:
    cnn = ConvNet1d(in_channels=2, width=4, depth=depth, pool_size=4)
    assert len(cnn.build_blocks()) == depth
    out = run_backbone(cnn, torch.rand(3, 2, length))
    assert out.shape == (3, cnn.out_features) == (3, channels * 4)


def test_fusion_reads_a_dict_and_projects_to_four_times_width() -> None:
    fusion = Fusion(
        {"tab": MLP(5, width=2, depth=1), "wave": ConvNet1d(2, width=2, depth=1, pool_size=2)},
        width=3,
        depth=2,
    )
    blocks = fusion.build_blocks()
    assert len(blocks) == 2
    batch = {"tab": torch.rand(4, 5), "wave": torch.rand(4, 2, 16)}
    out = run_backbone(fusion, batch)
    assert out.shape == (4, fusion.out_features) == (4, 12)
    with pytest.raises(ValueError, match="at least one input"):
        Fusion({})


# --- multi-input models -------------------------------------------------------------------

INPUTS = (
    ImageInput("photo", 16, 3),
    SignalInput("wave", ("a", "b"), 32, (0.0, 0.0), (1.0, 1.0)),
    FeatureInput("tab", ("x", "y"), ("k",), (0.0, 0.0), (1.0, 1.0), (("p", "q", "r"),)),
)
TASKS = (
    TaskSpec("kind", "classification", n_classes=3, classes=("u", "v", "w")),
    TaskSpec("size", "regression"),
    TaskSpec("ok", "binary"),
)


def batch(n: int = 4) -> dict[str, torch.Tensor]:
    return {
        "photo": torch.rand(n, 3, 16, 16),
        "wave": torch.randn(n, 2, 32),
        "tab": torch.randn(n, 5),
    }


def fused_spec(shared_depth: int | None) -> ModelSpec:
    return ModelSpec(
        tasks=TASKS,
        backbone="auto",
        backbone_args={"width": 4, "depth": 2},
        shared_depth=shared_depth,
        head_hidden=8,
        inputs=INPUTS,
    )


@pytest.mark.parametrize("shared_depth", [0, 1, 2, None])
def test_build_model_fuses_several_inputs_at_any_split_point(shared_depth: int | None) -> None:
    model = build_model(fused_spec(shared_depth))
    outputs = model(batch())
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {
        "kind": (4, 3),
        "size": (4, 1),
        "ok": (4, 1),
    }
    shared = 2 if shared_depth is None else shared_depth
    assert model.shared_depth == shared
    encoders = [n for n, _ in model.named_modules() if n.endswith("encoders.photo")]
    if shared == 0:  # every task reads the inputs with its own encoders
        assert model.shared_parameters() == []
        assert sorted(encoders) == sorted(f"branches.{t.name}.0.encoders.photo" for t in TASKS)
    else:
        assert encoders == ["trunk.0.encoders.photo"]
        assert model.branches is None if shared == 2 else model.branches is not None


def test_fused_model_outputs_depend_on_every_input() -> None:
    model = build_model(fused_spec(1)).eval()
    x = batch()
    base = model(x)["kind"]
    for name in ("photo", "wave", "tab"):
        changed = dict(x)
        changed[name] = x[name] + 1.0
        assert not torch.allclose(model(changed)["kind"], base), name


def test_auto_backbone_reads_a_single_input_with_its_kinds_backbone() -> None:
    for spec_input, cls in ((INPUTS[0], ConvNet), (INPUTS[1], ConvNet1d), (INPUTS[2], MLP)):
        spec = ModelSpec(tasks=TASKS, backbone="auto", inputs=(spec_input,))
        assert isinstance(build_backbone(spec), cls)
    model = build_model(
        ModelSpec(tasks=TASKS, backbone="mlp", backbone_args={"width": 2}, inputs=(INPUTS[2],))
    )
    assert model(torch.randn(3, 5))["kind"].shape == (3, 3)


@pytest.mark.parametrize(
    ("backbone", "spec_input", "message"),
    [
        ("cnn", INPUTS[2], r"backbone 'cnn' cannot read input 'tab' \(features\); use 'mlp'"),
        ("mlp", INPUTS[1], r"backbone 'mlp' cannot read input 'wave' \(signal\); use 'cnn1d'"),
        ("cnn1d", INPUTS[0], r"backbone 'cnn1d' cannot read input 'photo' \(image\); use 'cnn'"),
    ],
)
def test_a_backbone_that_cannot_read_the_input_names_both(backbone, spec_input, message) -> None:
    with pytest.raises(ValueError, match=message):
        build_model(ModelSpec(tasks=TASKS, backbone=backbone, inputs=(spec_input,)))


def test_several_inputs_need_fusion() -> None:
    with pytest.raises(ValueError, match=r"inputs \['photo', 'wave', 'tab'\] need backbone"):
        build_model(ModelSpec(tasks=TASKS, backbone="cnn", inputs=INPUTS))


def test_multi_input_model_spec_round_trips_through_json() -> None:
    spec = fused_spec(1)
    assert ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


# --- datasets and schedules ---------------------------------------------------------------


def dict_dataset(n: int = 6) -> tuple[MultiTaskDataset, dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(1)
    arrays = {
        "photo": rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8),
        "tab": rng.normal(size=(n, 5)).astype(np.float32),
    }
    labels = np.array([[0, 1.5], [NAN, 2.0], [2, NAN], [1, 0.0], [0, NAN], [NAN, -1.0]])[:n]
    return MultiTaskDataset(arrays, labels), arrays, labels


def test_dict_dataset_returns_dict_samples_and_the_loader_collates_them() -> None:
    dataset, arrays, labels = dict_dataset()
    inputs, label = dataset[2]
    assert set(inputs) == {"photo", "tab"}
    assert inputs["photo"].shape == (3, 4, 4)  # HWC uint8 -> CHW float in [0, 1]
    torch.testing.assert_close(
        inputs["photo"], torch.from_numpy(arrays["photo"][2]).permute(2, 0, 1).float() / 255
    )
    torch.testing.assert_close(inputs["tab"], torch.from_numpy(arrays["tab"][2]))
    assert float(label[0]) == 2.0 and bool(torch.isnan(label[1]))

    batches = list(make_loader(dataset, 4, shuffle=False))
    first, first_labels = batches[0]
    assert isinstance(first, dict) and first["photo"].shape == (4, 3, 4, 4)
    assert first["tab"].shape == (4, 5) and first_labels.shape == (4, 2)
    torch.testing.assert_close(first["tab"], torch.from_numpy(arrays["tab"][:4]))
    np.testing.assert_array_equal(first_labels.numpy(), labels[:4].astype(np.float32))


def test_dict_dataset_rejects_mismatched_counts() -> None:
    with pytest.raises(ValueError, match=r"input sample counts \{'a': 3, 'b': 2\} but 3 label"):
        MultiTaskDataset({"a": np.zeros((3, 2)), "b": np.zeros((2, 2))}, np.zeros((3, 1)))


def test_row_task_index_keeps_only_that_tasks_label() -> None:
    dataset, _, _ = dict_dataset()
    inputs, only = dataset[(3, 1)]
    assert set(inputs) == {"photo", "tab"}
    assert bool(torch.isnan(only[0])) and float(only[1]) == 0.0
    _, only = dataset[(3, 0)]
    assert float(only[0]) == 1.0 and bool(torch.isnan(only[1]))


def alternating_labels() -> np.ndarray:
    """30 rows: task 0 labelled on rows 0-19, task 1 on rows 15-29, task 2 on rows 0-4."""
    labels = np.full((30, 3), NAN)
    labels[:20, 0] = np.arange(20) % 2
    labels[15:, 1] = 1.0
    labels[:5, 2] = 0.0
    return labels


def test_alternating_batches_hold_one_task_and_only_its_labelled_rows() -> None:
    labels = alternating_labels()
    sampler = AlternatingTaskBatches(labels, batch_size=4, seed=0)
    batches = list(sampler)
    assert sampler.rounds == 5  # the largest task: 20 rows / 4
    assert len(batches) == len(sampler) == 5 * 3
    for k, batch_index in enumerate(batches):
        tasks = {task for _, task in batch_index}
        assert tasks == {k % 3}  # one task per batch, in turn: one batch per task per round
        rows = [row for row, _ in batch_index]
        assert not np.isnan(labels[rows, k % 3]).any() and len(rows) == 4
    seen = {t: {row for b in batches for row, task in b if task == t} for t in range(3)}
    assert seen[0] == set(range(20))  # the largest task sees every row once per epoch
    assert seen[1] == set(range(15, 30)) and seen[2] == set(range(5))


def test_alternating_batch_never_holds_a_row_twice() -> None:
    """Task 2 has 5 rows for batches of 4: the leftover row of one shuffle is topped up from
    the next shuffle without drawing it again (seed 0 once gave [2, 3, 1, 2])."""
    for seed in range(5):
        batches = list(AlternatingTaskBatches(alternating_labels(), batch_size=4, seed=seed))
        assert all(len({row for row, _ in b}) == len(b) == 4 for b in batches), seed


def test_alternating_batches_are_seeded() -> None:
    labels = alternating_labels()
    first = list(AlternatingTaskBatches(labels, 4, seed=3))
    assert first == list(AlternatingTaskBatches(labels, 4, seed=3))
    assert first != list(AlternatingTaskBatches(labels, 4, seed=4))


def test_alternating_batches_refuse_a_task_without_labels() -> None:
    labels = alternating_labels()
    labels[:, 1] = NAN
    with pytest.raises(ValueError, match=r"task column\(s\) \[1\] have no labelled rows"):
        AlternatingTaskBatches(labels, 4)


def test_alternating_loader_masks_the_other_tasks_labels() -> None:
    labels = np.tile(np.array([[0.0, 1.0, 1.0]]), (12, 1))  # every row labelled for every task
    arrays = {"tab": np.arange(24, dtype=np.float32).reshape(12, 2)}
    loader = make_schedule_loader(
        MultiTaskDataset(arrays, labels), 4, schedule="alternating", seed=0
    )
    seen = 0
    for k, (inputs, batch_labels) in enumerate(loader):
        present = ~torch.isnan(batch_labels)
        assert present[:, k % 3].all() and int(present.sum()) == len(batch_labels)
        assert inputs.shape == (4, 2)
        seen += 1
    assert seen == 3 * 3
    with pytest.raises(ValueError, match="unknown schedule 'mixed'; available: joint"):
        make_schedule_loader(MultiTaskDataset(arrays, labels), 4, schedule="mixed")


# --- behaviour: disjoint labels -----------------------------------------------------------


def two_rule_table(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features ``[n, 4]``; task A is ``x0 + x1 > 0``, task B is ``x2 - x3 > 0``."""
    x = np.random.default_rng(seed).normal(size=(n, 4)).astype(np.float32)
    labels = np.stack([x[:, 0] + x[:, 1] > 0, x[:, 2] - x[:, 3] > 0], axis=1)
    return x, labels.astype(np.float64)


@pytest.mark.parametrize("schedule", ["alternating", "joint"])
def test_disjoint_labels_learn_both_tasks(schedule: str) -> None:
    x, labels = two_rule_table(320, seed=5)
    labels[:160, 1] = NAN  # the first half is labelled for task A only
    labels[160:, 0] = NAN  # the second half for task B only
    held_x, held_labels = two_rule_table(200, seed=6)
    tasks = (TaskSpec("a", "binary"), TaskSpec("b", "binary"))
    spec = ModelSpec(
        tasks=tasks,
        backbone="mlp",
        backbone_args={"width": 4, "depth": 2},
        head_hidden=8,
        inputs=(FeatureInput("tab", ("x0", "x1", "x2", "x3")),),
    )
    model = build_model(spec)
    train = make_schedule_loader(
        MultiTaskDataset({"tab": x}, labels), 32, schedule=schedule, seed=0
    )
    val = make_loader(MultiTaskDataset({"tab": held_x}, held_labels), 256, shuffle=False)
    trainer = Trainer(model, build_weighting("equal", ["a", "b"]), epochs=25, lr=1e-2)
    trainer.fit(train, val)
    scores = score_predictions(model, predict(model, val, torch.device("cpu")))
    for name in ("a", "b"):
        assert scores[name]["balanced_accuracy"] > 0.9, (name, scores[name])
    assert summarize(scores)["mean_score"] > 0.9


def test_alternating_steps_each_task_as_often() -> None:
    """A task with 4x fewer rows still gets one batch per round (resampling its rows)."""
    labels = np.full((50, 2), NAN)
    labels[:40, 0] = 1.0
    labels[40:, 1] = 0.0
    batches = list(AlternatingTaskBatches(labels, 8, seed=0))
    per_task = [sum(1 for b in batches if b[0][1] == t) for t in range(2)]
    assert per_task == [5, 5]
    small = [row for b in batches if b[0][1] == 1 for row, _ in b]
    assert set(small) == set(range(40, 50)) and len(small) == 5 * 8


def test_dataloader_collates_dict_inputs_under_alternating_schedule() -> None:
    dataset, _, labels = dict_dataset()
    loader = DataLoader(dataset, batch_sampler=AlternatingTaskBatches(labels, 2, seed=0))
    inputs, batch_labels = next(iter(loader))
    assert set(inputs) == {"photo", "tab"} and inputs["photo"].shape == (2, 3, 4, 4)
    assert batch_labels.shape == (2, 2) and bool(torch.isnan(batch_labels[:, 1]).all())
