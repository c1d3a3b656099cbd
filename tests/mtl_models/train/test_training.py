"""training: behavioural tests on a tiny two-task problem the test builds itself.

Task ``bright``: is the mean brightness high? Task ``left``: is the left half brighter than the
right? Both are readable from 8x8 pixels, so a tiny ConvNet learns them in a few epochs.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

from mtl_models.metrics import summarize
from mtl_models.nn.architectures import HardSharing
from mtl_models.nn.backbones import ConvNet
from mtl_models.nn.model import MultiTaskModel
from mtl_models.tasks import TaskSpec
from mtl_models.train.loaders import MultiTaskImageDataset, make_loader
from mtl_models.train.prediction import predict, score_predictions
from mtl_models.train.trainer import (
    Callback,
    EpochLog,
    FitResult,
    Trainer,
    resolve_device,
)
from mtl_models.weighting import build_weighting
from tests.toy_data import bright_left_images

TASKS = (TaskSpec("bright", "binary"), TaskSpec("left", "binary"))
NAMES = [t.name for t in TASKS]


def loaders(n_train: int = 256, n_val: int = 128):
    train = MultiTaskImageDataset(*bright_left_images(n_train, seed=1))
    val = MultiTaskImageDataset(*bright_left_images(n_val, seed=2))
    return make_loader(train, 32, shuffle=True, seed=0), make_loader(val, 64, shuffle=False)


def tiny_model() -> MultiTaskModel:
    return HardSharing(TASKS, ConvNet(1, width=4, depth=2, pool_size=2), 1, head_hidden=16)


class Recorder(Callback):
    def __init__(self) -> None:
        self.begun: list[Trainer] = []
        self.logs: list[EpochLog] = []
        self.states: list[dict[str, Tensor]] = []
        self.ended: list[FitResult] = []

    def on_train_begin(self, trainer: Trainer) -> None:
        self.begun.append(trainer)
        self.trainer = trainer

    def on_epoch_end(self, log: EpochLog) -> None:
        self.logs.append(log)
        self.states.append(copy.deepcopy(self.trainer.model.state_dict()))

    def on_train_end(self, result: FitResult) -> None:
        self.ended.append(result)


@dataclass
class Fitted:
    trainer: Trainer
    result: FitResult
    recorder: Recorder
    val_loader: object


EPOCHS = 6


@pytest.fixture(scope="module")
def fitted() -> Fitted:
    torch.manual_seed(0)
    train_loader, val_loader = loaders()
    recorder = Recorder()
    trainer = Trainer(
        tiny_model(),
        build_weighting("equal", NAMES),
        epochs=EPOCHS,
        lr=1e-2,
        callbacks=[recorder],
        majority={"bright": 1.0},
    )
    result = trainer.fit(train_loader, val_loader)
    return Fitted(trainer, result, recorder, val_loader)


def test_training_loss_falls(fitted: Fitted) -> None:
    history = fitted.result.history
    assert len(history) == EPOCHS
    assert history[-1].train_loss < 0.5 * history[0].train_loss
    for name in NAMES:
        assert history[-1].task_losses[name] < history[0].task_losses[name]


def test_validation_score_beats_chance(fitted: Fitted) -> None:
    assert fitted.result.best_score > 0.85  # mean balanced accuracy; chance is 0.5
    best = fitted.result.history[fitted.result.best_epoch - 1]
    for name in NAMES:
        assert best.val_metrics[name]["balanced_accuracy"] > 0.75, name
        assert name in summarize(best.val_metrics)["tasks_beating_majority"]


def test_callbacks_called_once_per_epoch_with_filled_logs(fitted: Fitted) -> None:
    recorder = fitted.recorder
    assert recorder.begun == [fitted.trainer]
    assert recorder.ended == [fitted.result]
    assert recorder.logs == fitted.result.history
    assert [log.epoch for log in recorder.logs] == list(range(1, EPOCHS + 1))
    for log in recorder.logs:
        assert math.isfinite(log.train_loss) and log.train_loss > 0
        assert set(log.task_losses) == set(NAMES)
        assert all(math.isfinite(v) for v in log.task_losses.values())
        assert log.weights == {"bright": 1.0, "left": 1.0}
        assert set(log.val_metrics) == set(NAMES)
        assert log.val_metrics["bright"]["n"] == 128
        assert log.val_score == pytest.approx(summarize(log.val_metrics)["mean_score"])
        assert log.seconds > 0
    best_so_far = -math.inf
    for log in recorder.logs:
        assert log.is_best == (log.val_score > best_so_far)
        best_so_far = max(best_so_far, log.val_score)


def test_majority_mapping_reaches_the_metrics(fitted: Fitted) -> None:
    val_labels = bright_left_images(128, seed=2)[1]
    metrics = fitted.result.history[0].val_metrics
    # bright's baseline predicts the given 1.0; left's predicts the validation mode
    assert metrics["bright"]["majority_accuracy"] == pytest.approx(val_labels[:, 0].mean())
    left_mode_share = max(val_labels[:, 1].mean(), 1 - val_labels[:, 1].mean())
    assert metrics["left"]["majority_accuracy"] == pytest.approx(left_mode_share)


def test_fit_keeps_the_best_epoch_weights(fitted: Fitted) -> None:
    result = fitted.result
    restored = fitted.trainer.model.state_dict()
    best_state = fitted.recorder.states[result.best_epoch - 1]
    for key, value in best_state.items():
        assert torch.equal(restored[key], value), key
    scores = score_predictions(
        fitted.trainer.model, predict(fitted.trainer.model, fitted.val_loader, torch.device("cpu"))
    )
    assert summarize(scores)["mean_score"] == result.best_score
    assert not result.stopped_early


def test_early_stopping_stops_and_restores_best_weights() -> None:
    train_loader, val_loader = loaders(n_train=128, n_val=64)
    recorder = Recorder()
    # min_delta above any possible gain: epoch 1 is the best and nothing later improves on it
    trainer = Trainer(
        tiny_model(),
        build_weighting("equal", NAMES),
        epochs=10,
        lr=1e-2,
        patience=2,
        min_delta=10.0,
        callbacks=[recorder],
    )
    result = trainer.fit(train_loader, val_loader)
    assert result.stopped_early
    assert len(result.history) == 3  # epoch 1, then two epochs of waiting
    assert result.best_epoch == 1
    assert [log.is_best for log in result.history] == [True, False, False]
    assert result.best_score == result.history[0].val_score

    restored = trainer.model.state_dict()
    first, last = recorder.states[0], recorder.states[-1]
    assert all(torch.equal(restored[k], v) for k, v in first.items())
    assert not all(torch.equal(restored[k], v) for k, v in last.items())
    scores = score_predictions(trainer.model, predict(trainer.model, val_loader, trainer.device))
    assert summarize(scores)["mean_score"] == result.best_score


def test_every_parameter_gets_a_gradient_after_one_step() -> None:
    tasks = (
        TaskSpec("bin", "binary"),
        TaskSpec("cls", "classification", n_classes=3),
        TaskSpec("ord", "ordinal", n_classes=4),
        TaskSpec("reg", "regression"),
    )
    model = HardSharing(tasks, ConvNet(1, width=4, depth=2, pool_size=2), 1, head_hidden=8)
    trainer = Trainer(model, build_weighting("equal", [t.name for t in tasks]), epochs=1)
    nan = float("nan")
    labels = torch.tensor([[0.0, 2.0, nan, 0.5], [1.0, 0.0, nan, -1.0], [1.0, 1.0, nan, 2.0]])
    before = copy.deepcopy(model.state_dict())
    stats = trainer.train_epoch([(torch.rand(3, 1, 8, 8), labels)])

    assert math.isfinite(stats.loss)
    assert float(stats.task_losses[2]) == 0.0  # 'ord' has no label in the batch
    assert stats.weights is not None and stats.gradient_cosine is None
    torch.testing.assert_close(stats.weights, torch.ones(4))
    for name, p in model.named_parameters():
        assert p.requires_grad
        assert p.grad is not None, name
        assert bool(torch.isfinite(p.grad).all()), name
    assert model.branches is not None
    labelled = [model.head("bin"), model.branches["cls"]]
    assert all(bool(p.grad.abs().sum() > 0) for m in labelled for p in m.parameters())
    # 'ord' only gets zeros, so AdamW leaves its head unchanged while the others move
    after = model.state_dict()
    ord_keys = [k for k in after if k.startswith("heads.ord.")]
    assert ord_keys and all(torch.equal(after[k], before[k]) for k in ord_keys)
    assert not torch.equal(after["heads.bin.net.0.weight"], before["heads.bin.net.0.weight"])


def test_empty_training_loader_raises() -> None:
    trainer = Trainer(tiny_model(), build_weighting("equal", NAMES), epochs=1)
    with pytest.raises(ValueError, match="no batches"):
        trainer.train_epoch([])


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
