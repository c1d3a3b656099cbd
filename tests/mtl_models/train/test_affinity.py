"""Lookahead task affinity: a copied task helps its source, a noise task does not."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mtl_models.nn.architectures import HardSharing
from mtl_models.nn.backbones import ConvNet
from mtl_models.nn.model import MultiTaskModel
from mtl_models.tasks import TaskSpec
from mtl_models.train.affinity import (
    EXHAUSTIVE_LIMIT,
    _partitions,
    lookahead_affinity,
    mean_affinity,
    suggest_groups,
)
from mtl_models.train.loaders import MultiTaskImageDataset, images_to_tensor, make_loader
from mtl_models.train.trainer import Trainer
from mtl_models.weighting import build_weighting
from tests.toy_data import bright_left_images

TASKS = (TaskSpec("a", "binary"), TaskSpec("b_copy", "binary"), TaskSpec("c_noise", "binary"))
NAMES = [t.name for t in TASKS]


def data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Task a: is the image bright; b: the same labels; c: coin flips unrelated to the image."""
    images, labels = bright_left_images(n, seed=seed)
    noise = np.random.default_rng(seed + 100).integers(0, 2, n).astype(np.float32)
    return images, np.stack([labels[:, 0], labels[:, 0], noise], axis=1)


def model() -> MultiTaskModel:
    return HardSharing(TASKS, ConvNet(1, width=4, depth=2, pool_size=2), 1, head_hidden=16)


@pytest.fixture(scope="module")
def history():
    torch.manual_seed(0)
    train = make_loader(MultiTaskImageDataset(*data(256, seed=1)), 32, shuffle=True, seed=0)
    val = make_loader(MultiTaskImageDataset(*data(64, seed=2)), 64, shuffle=False)
    trainer = Trainer(model(), build_weighting("equal", NAMES), epochs=4, lr=1e-2, affinity_every=1)
    return trainer.fit(train, val).history


def test_a_copied_task_gains_from_its_source_and_noise_does_not(history):
    for log in history[1:]:  # after the heads have started to agree
        z = np.array(log.affinity)
        a, b, c = 0, 1, 2
        assert z[a, b] > 0
        assert z[a, b] > z[a, c] + 0.5 * abs(z[a, b])
        assert z[b, a] > z[b, c]


def test_affinity_restores_the_model():
    net = model()
    images, labels = data(32, seed=3)
    x, y = images_to_tensor(images), torch.from_numpy(labels)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    net.train()
    z = lookahead_affinity(net, x, y, lr=0.1)
    assert z.shape == (3, 3)
    assert net.training
    for key, value in net.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert all(z[i, i] > 0 for i in range(3))  # a step on a task lowers its own loss


def test_a_task_without_labels_in_the_batch_gives_nan_for_its_pairs():
    net = model()
    images, labels = data(16, seed=4)
    labels[:, 2] = np.nan
    x = images_to_tensor(images)
    z = lookahead_affinity(net, x, torch.from_numpy(labels), lr=0.1)
    assert torch.isnan(z[2]).all() and torch.isnan(z[:, 2]).all()
    assert not torch.isnan(z[:2, :2]).any()


def test_trainer_logs_no_affinity_unless_asked():
    train = make_loader(MultiTaskImageDataset(*data(64, seed=5)), 32, shuffle=True, seed=0)
    log = Trainer(model(), build_weighting("equal", NAMES), epochs=1).fit(train, train).history[0]
    assert log.affinity is None
    assert not math.isnan(log.val_score)


def planted(n: int, groups: list[list[int]], seed: int = 0) -> np.ndarray:
    """Small noise everywhere, strong positive affinity inside the planted groups."""
    matrix = np.random.default_rng(seed).normal(0, 0.005, (n, n))
    for group in groups:
        for i in group:
            for j in group:
                matrix[i, j] = 0.1
    return matrix


def test_grouping_recovers_planted_groups():
    names = [f"t{i}" for i in range(7)]
    grouping = suggest_groups(planted(7, [[0, 3, 5], [1, 2], [4, 6]]), names, max_groups=3)
    assert grouping.exhaustive
    assert sorted(map(sorted, grouping.groups)) == [["t0", "t3", "t5"], ["t1", "t2"], ["t4", "t6"]]
    assert grouping.score == pytest.approx(7 * 0.1)


def test_grouping_respects_max_groups_and_keeps_every_task_once():
    names = [f"t{i}" for i in range(6)]
    grouping = suggest_groups(planted(6, [[0, 1], [2, 3], [4, 5]]), names, max_groups=2)
    assert len(grouping.groups) <= 2
    assert sorted(n for g in grouping.groups for n in g) == names


def test_a_task_that_hurts_the_others_is_left_alone():
    matrix = planted(4, [[0, 1, 2]])
    matrix[3, :3] = matrix[:3, 3] = -0.2
    grouping = suggest_groups(matrix, ["a", "b", "c", "d"], max_groups=2)
    assert sorted(map(sorted, grouping.groups)) == [["a", "b", "c"], ["d"]]


@pytest.mark.parametrize(("n", "max_groups", "count"), [(4, 4, 15), (4, 2, 8), (5, 5, 52)])
def test_partitions_are_every_set_partition(n, max_groups, count):
    seen = {tuple(p) for p in _partitions(n, max_groups)}
    assert len(seen) == count  # Bell numbers / Stirling sums, no duplicates


def test_greedy_grouping_beyond_the_exhaustive_limit_finds_planted_groups():
    n = EXHAUSTIVE_LIMIT + 2
    groups = [list(range(0, n, 3)), list(range(1, n, 3)), list(range(2, n, 3))]
    names = [f"t{i}" for i in range(n)]
    grouping = suggest_groups(planted(n, groups), names, max_groups=3)
    assert not grouping.exhaustive
    assert sorted(map(sorted, grouping.groups)) == sorted(
        sorted(f"t{i}" for i in g) for g in groups
    )


def test_mean_affinity_ignores_unmeasured_epochs():
    nan = float("nan")
    mean = mean_affinity([[[1.0, nan], [0.5, 1.0]], [[3.0, 0.2], [nan, 1.0]]])
    assert mean.tolist() == [[2.0, 0.2], [0.5, 1.0]]


def test_trainer_refuses_affinity_without_shared_blocks_or_with_a_bad_interval():
    unshared = HardSharing(TASKS, ConvNet(1, width=4, depth=2, pool_size=2), 0, head_hidden=16)
    with pytest.raises(ValueError, match=r"no shared blocks to step \(shared_depth=0\)"):
        Trainer(unshared, build_weighting("equal", NAMES), epochs=1, affinity_every=5)
    with pytest.raises(ValueError, match="affinity_every must be >= 1"):
        Trainer(model(), build_weighting("equal", NAMES), epochs=1, affinity_every=0)
