"""fine_tune: heads alone for the first epochs, the backbone at a fraction of the learning
rate after that, BatchNorm optionally frozen; the default is the plain cosine schedule."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from mtl_models.inputs import ImageInput
from mtl_models.nn.model import ModelSpec, MultiTaskModel, build_model
from mtl_models.tasks import TaskSpec
from mtl_models.train.fine_tune import FineTune
from mtl_models.train.loaders import MultiTaskDataset, make_loader
from mtl_models.train.trainer import Callback, EpochLog, Trainer
from mtl_models.weighting import build_weighting

TASKS = (TaskSpec("a", "binary"), TaskSpec("b", "classification", n_classes=3))
NAMES = [t.name for t in TASKS]
SPEC = ModelSpec(
    tasks=TASKS,
    backbone="cnn",
    backbone_args={"width": 4, "depth": 2, "pool_size": 1},
    shared_depth=1,  # a trunk and a branch per task: both are the backbone
    head_hidden=8,
    inputs=(ImageInput("image", 16, 1),),
)
LR = 1e-2


def loader(n: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 16, 16, 1), dtype=np.uint8)
    labels = np.stack([rng.integers(0, 2, n), rng.integers(0, 3, n)], axis=1)
    data = MultiTaskDataset({"image": images}, labels.astype(np.float32))
    return make_loader(data, 8, shuffle=True, seed=seed)


def model() -> MultiTaskModel:
    return build_model(SPEC)


def state(modules: list[nn.Module]) -> dict[str, torch.Tensor]:
    """Parameters and buffers (BatchNorm statistics) of ``modules``, copied."""
    return {
        f"{i}.{key}": value.detach().clone()
        for i, module in enumerate(modules)
        for key, value in module.state_dict().items()
    }


def backbone_state(m: MultiTaskModel) -> dict[str, torch.Tensor]:
    return state(m.backbone_modules())


def norms(m: MultiTaskModel) -> list[nn.BatchNorm2d]:
    return [
        x for part in m.backbone_modules() for x in part.modules() if isinstance(x, nn.BatchNorm2d)
    ]


def differing(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    assert before.keys() == after.keys()
    return {key for key in before if not torch.equal(before[key], after[key])}


class States(Callback):
    """The model's backbone and head state at the end of every epoch."""

    def __init__(self) -> None:
        self.backbone: list[dict[str, torch.Tensor]] = []
        self.heads: list[dict[str, torch.Tensor]] = []

    def on_train_begin(self, trainer: Trainer) -> None:
        self.model = trainer.model

    def on_epoch_end(self, log: EpochLog) -> None:
        self.backbone.append(backbone_state(self.model))
        self.heads.append(state([self.model.heads]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"freeze_epochs": -1}, "freeze_epochs must be >= 0, got -1"),
        ({"backbone_lr_scale": 0.0}, r"backbone_lr_scale must be in \(0, 1\], got 0.0"),
        ({"backbone_lr_scale": -0.5}, r"backbone_lr_scale must be in \(0, 1\], got -0.5"),
        ({"backbone_lr_scale": 1.5}, r"backbone_lr_scale must be in \(0, 1\], got 1.5"),
    ],
)
def test_fine_tune_validates_its_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FineTune(**kwargs)


def test_fine_tune_accepts_its_bounds() -> None:
    assert FineTune() == FineTune(freeze_epochs=0, backbone_lr_scale=1.0, freeze_batchnorm=False)
    tune = FineTune(freeze_epochs=3, backbone_lr_scale=1e-3, freeze_batchnorm=True)
    assert (tune.freeze_epochs, tune.backbone_lr_scale, tune.freeze_batchnorm) == (3, 1e-3, True)


@pytest.mark.parametrize("method", ["equal", "uw", "upgrad"])
def test_a_frozen_epoch_trains_only_the_heads(method: str) -> None:
    m = model()
    backbone, heads = backbone_state(m), state([m.heads])
    assert any(key.endswith("running_mean") for key in backbone)
    trainer = Trainer(
        m,
        build_weighting(method, NAMES),
        epochs=1,
        lr=LR,
        weight_decay=0.1,  # decoupled decay must not move frozen weights either
        fine_tune=FineTune(freeze_epochs=1),
    )
    assert trainer.optimizer.param_groups[0]["lr"] == 0.0
    result = trainer.fit(loader(), loader(seed=1))
    assert result.best_epoch == 1
    # trunk and branches (weights and BatchNorm statistics) as they were; the heads learned
    assert differing(backbone, backbone_state(m)) == set()
    assert differing(heads, state([m.heads])) == set(heads)
    assert all(p.requires_grad for p in m.parameters())  # frozen by learning rate, not grad


def test_the_backbone_trains_after_the_frozen_epochs() -> None:
    m = model()
    initial = backbone_state(m)
    states = States()
    trainer = Trainer(
        m,
        build_weighting("equal", NAMES),
        epochs=2,
        lr=LR,
        callbacks=[states],
        fine_tune=FineTune(freeze_epochs=1),
    )
    trainer.fit(loader(), loader(seed=1))
    first, second = states.backbone
    assert differing(initial, first) == set()
    assert differing(first, second) == set(initial)  # every weight and statistic moved
    assert differing(states.heads[0], states.heads[1]) == set(states.heads[0])
    # epoch 2's backbone rate is the cosine's value at epoch 1 of 2
    groups = trainer.optimizer.param_groups
    assert groups[0]["lr"] == pytest.approx(0.0)  # cosine(2 of 2) = 0
    assert trainer.scheduler.lr_lambdas[0](1) == pytest.approx(0.5)
    assert trainer.scheduler.lr_lambdas[0](0) == 0.0


def test_backbone_lr_scale_scales_the_backbone_group() -> None:
    m = model()
    weighting = build_weighting("uw", NAMES)
    trainer = Trainer(m, weighting, epochs=4, lr=LR, fine_tune=FineTune(backbone_lr_scale=0.1))
    backbone_group, head_group = trainer.optimizer.param_groups
    assert head_group["lr"] == pytest.approx(LR)
    assert backbone_group["lr"] == pytest.approx(0.1 * LR)
    backbone_ids = {id(p) for part in m.backbone_modules() for p in part.parameters()}
    assert {id(p) for p in backbone_group["params"]} == backbone_ids
    extra = {id(p) for p in weighting.optimizer_parameters()}
    assert extra  # uncertainty weighting learns its own log-variances: with the heads
    assert {id(p) for p in head_group["params"]} == {id(p) for p in m.heads.parameters()} | extra
    trainer.train_epoch(loader())
    backbone_group, head_group = trainer.optimizer.param_groups
    assert head_group["lr"] == pytest.approx(LR * 0.5 * (1 + math.cos(math.pi / 4)))
    assert backbone_group["lr"] == pytest.approx(0.1 * head_group["lr"])


def test_freeze_batchnorm_keeps_statistics_and_affine_weights() -> None:
    m = model()
    bn_state = state(norms(m))
    assert len(norms(m)) == 3  # the trunk's and each task branch's
    bn_params = {id(p) for bn in norms(m) for p in bn.parameters()}
    other = {
        name: p.detach().clone()
        for part in m.backbone_modules()
        for name, p in part.named_parameters()
        if id(p) not in bn_params
    }
    trainer = Trainer(
        m,
        build_weighting("upgrad", NAMES),  # reads model.shared_parameters()
        epochs=2,
        lr=LR,
        weight_decay=0.1,
        fine_tune=FineTune(freeze_batchnorm=True),
    )
    assert all(not p.requires_grad for bn in norms(m) for p in bn.parameters())
    shared = {id(p) for p in m.shared_parameters()}
    assert shared and shared.isdisjoint(bn_params)
    assert shared == {id(p) for p in m.trunk.parameters()} - bn_params
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert optimised.isdisjoint(bn_params)
    trainer.fit(loader(), loader(seed=1))
    assert differing(bn_state, state(norms(m))) == set()
    after = {name: p for part in m.backbone_modules() for name, p in part.named_parameters()}
    assert all(not torch.equal(other[name], after[name]) for name in other)


def test_without_fine_tune_batchnorm_learns_statistics() -> None:
    """The reference for the frozen tests above: training does move them."""
    m = model()
    bn_state = state(norms(m))
    Trainer(m, build_weighting("equal", NAMES), epochs=1, lr=LR).fit(loader(), loader(seed=1))
    assert differing(bn_state, state(norms(m))) == set(bn_state)


def test_the_default_is_the_cosine_schedule() -> None:
    epochs = 4
    m = model()
    trainer = Trainer(m, build_weighting("equal", NAMES), epochs=epochs, lr=LR)
    assert trainer.fine_tune == FineTune()
    reference_opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=LR)
    reference = torch.optim.lr_scheduler.CosineAnnealingLR(reference_opt, T_max=epochs)
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [LR, LR]
    data = loader()
    for epoch in range(1, epochs + 1):
        trainer.train_epoch(data)
        reference_opt.step()
        reference.step()
        expected = LR * 0.5 * (1 + math.cos(math.pi * epoch / epochs))
        for group in trainer.optimizer.param_groups:
            assert group["lr"] == pytest.approx(expected, abs=1e-12)
            assert group["lr"] == pytest.approx(reference_opt.param_groups[0]["lr"], abs=1e-12)
    # one step of the default equals one step of a single AdamW group over all parameters
    # (what the trainer built before the backbone got its own group)
    m = model()
    twin = copy.deepcopy(m)
    batch, labels = next(iter(loader()))
    Trainer(m, build_weighting("equal", NAMES), epochs=1, lr=LR).train_epoch([(batch, labels)])
    optimizer = torch.optim.AdamW(twin.parameters(), lr=LR, weight_decay=0.0)
    twin.train()
    outputs = twin(batch)
    twin.task_losses(outputs, labels).sum().backward()
    optimizer.step()
    for (name, p), q in zip(m.named_parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, msg=name)
