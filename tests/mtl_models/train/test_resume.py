"""Resumable training: a run stopped after any epoch and continued from its checkpoint ends
with the weights, history and weighting state of a run never stopped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mtl_models.augment.policy import LabelSafeAugment
from mtl_models.nn.architectures import HardSharing
from mtl_models.nn.backbones import ConvNet
from mtl_models.tasks import TaskSpec
from mtl_models.train import resume
from mtl_models.train.loaders import (
    MultiTaskImageDataset,
    make_loader,
    make_schedule_loader,
)
from mtl_models.train.trainer import Callback, EpochLog, Trainer
from mtl_models.weighting import build_weighting
from tests.toy_data import bright_left_images

TASKS = (TaskSpec("bright", "binary"), TaskSpec("left", "binary"))
EPOCHS = 4


class Kill(Callback):
    """Stops the process's training right after epoch ``at`` logged (before its checkpoint)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_epoch_end(self, log: EpochLog) -> None:
        if log.epoch == self.at:
            raise KeyboardInterrupt


class Resumed(Callback):
    def __init__(self) -> None:
        self.history: list[EpochLog] = []

    def on_resume(self, history: list[EpochLog]) -> None:
        self.history = list(history)


def _train(
    method: str,
    checkpoint: resume.Checkpoint | None,
    callbacks=(),
    schedule: str = "joint",
    augment: bool = False,
    patience: int | None = None,
):
    """A fresh model, weighting and loaders, built as a new process would (same seeds)."""
    torch.manual_seed(0)
    np.random.seed(0)
    images, labels = bright_left_images(96, seed=1)
    transform = None
    if augment:
        import albumentations as A

        transform = LabelSafeAugment([A.HorizontalFlip(p=0.5)], {}, seed=3)
    train = MultiTaskImageDataset(images, labels, transform)
    train_loader = make_schedule_loader(train, 32, schedule=schedule, seed=0)
    val_loader = make_loader(
        MultiTaskImageDataset(*bright_left_images(48, seed=2)), 64, shuffle=False
    )
    # dropout: a random stream the model itself draws from
    model = HardSharing(TASKS, ConvNet(1, width=4, depth=2, pool_size=2), 1, 8, dropout=0.3)
    trainer = Trainer(
        model,
        build_weighting(method, [t.name for t in TASKS]),
        epochs=EPOCHS,
        lr=3e-3,
        patience=patience,
        callbacks=callbacks,
    )
    return trainer, trainer.fit(train_loader, val_loader, checkpoint)


def _same(a: Trainer, b: Trainer) -> None:
    for (name, x), y in zip(
        a.model.state_dict().items(), b.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7, msg=name)
    for x, y in zip(
        a.weighting.state_dict().values(), b.weighting.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("method", "schedule", "augment", "killed_at"),
    [
        ("equal", "joint", True, 2),  # augmentation streams and the shuffling generator
        ("uw", "joint", False, 1),  # learned parameters in the optimiser
        ("dwa", "joint", False, 3),  # loss history kept as plain attributes
        ("famo", "joint", False, 2),  # its own Adam, created lazily
        ("rlw", "joint", False, 2),  # torch's global stream
        ("upgrad", "joint", False, 1),
        ("pcgrad", "joint", False, 3),  # random task order each step
        ("gradvac", "joint", False, 2),  # an EMA of cosines
        ("equal", "alternating", False, 2),  # the sampler's own numpy generator
    ],
)
def test_resumed_training_ends_with_the_uninterrupted_weights(
    tmp_path: Path, method: str, schedule: str, augment: bool, killed_at: int
) -> None:
    whole, whole_result = _train(method, None, schedule=schedule, augment=augment)

    path = tmp_path / "train.pt"
    with pytest.raises(KeyboardInterrupt):
        _train(method, resume.Checkpoint(path, "f"), [Kill(killed_at + 1)], schedule, augment)
    checkpoint = resume.Checkpoint.open(path, "f")
    assert checkpoint.epoch == killed_at
    seen = Resumed()
    resumed, result = _train(method, checkpoint, [seen], schedule, augment)

    _same(whole, resumed)
    assert [log.epoch for log in seen.history] == list(range(1, killed_at + 1))
    assert [log.val_score for log in result.history] == pytest.approx(
        [log.val_score for log in whole_result.history]
    )
    assert (result.best_epoch, result.best_score) == (
        whole_result.best_epoch,
        pytest.approx(whole_result.best_score),
    )


def test_early_stopping_state_survives_a_resume(tmp_path: Path) -> None:
    """Killed after the epoch that stopped training: the rerun trains nothing more."""
    path = tmp_path / "train.pt"
    _, stopped = _train("equal", resume.Checkpoint(path, "f"), patience=1)
    checkpoint = resume.Checkpoint.open(path, "f")
    _, result = _train("equal", checkpoint, patience=1)
    assert len(result.history) == len(stopped.history)
    assert result.stopped_early == stopped.stopped_early
    assert result.best_epoch == stopped.best_epoch


def test_a_checkpoint_for_other_params_is_not_resumed(tmp_path: Path, capsys) -> None:
    path = tmp_path / "train.pt"
    with pytest.raises(KeyboardInterrupt):
        _train("equal", resume.Checkpoint(path, "params-a"), [Kill(2)])
    assert resume.Checkpoint.open(path, "params-a").epoch == 1
    fresh = resume.Checkpoint.open(path, "params-b")
    assert fresh.state is None
    assert "other params or another split; starting over" in capsys.readouterr().out


def test_a_truncated_checkpoint_starts_over_and_says_so(tmp_path: Path, capsys) -> None:
    path = tmp_path / "train.pt"
    with pytest.raises(KeyboardInterrupt):
        _train("equal", resume.Checkpoint(path, "f"), [Kill(2)])
    path.write_bytes(path.read_bytes()[:100])
    assert resume.Checkpoint.open(path, "f").state is None
    out = capsys.readouterr().out
    assert str(path) in out and "starting from epoch 1" in out


def test_the_checkpoint_is_plain_data(tmp_path: Path) -> None:
    """Read back with ``weights_only=True``: nothing in it is unpickled code."""
    path = tmp_path / "train.pt"
    _train("famo", resume.Checkpoint(path, "f"))
    saved = torch.load(path, weights_only=True)
    assert saved["trainer"]["epoch"] == EPOCHS
    assert set(saved["trainer"]["weighting"]["attributes"][""]) >= {"task_names"}
