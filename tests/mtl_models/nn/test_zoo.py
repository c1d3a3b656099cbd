"""zoo backbones: ``timm/<model>`` and ``torchvision/<model>`` opened into blocks named by
module path, split at a stage count or a module path, trained end to end, checkpointed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mtl_models._registry import UnknownNameError
from mtl_models.inputs import ImageInput
from mtl_models.nn.backbones import BACKBONES, TimmBackbone, TorchvisionBackbone
from mtl_models.nn.backbones.zoo import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from mtl_models.nn.checkpoint import SPEC_FILE, load_checkpoint, save_checkpoint
from mtl_models.nn.model import ModelSpec, MultiTaskModel, build_backbone, build_model
from mtl_models.tasks import TaskSpec
from mtl_models.train.acceleration import Acceleration
from mtl_models.train.loaders import MultiTaskDataset, make_loader
from mtl_models.train.trainer import Trainer
from mtl_models.weighting import build_weighting

SQUEEZE = "torchvision/squeezenet1_1"
RESNET = "timm/resnet18"
TASKS = (TaskSpec("a", "binary"), TaskSpec("b", "classification", n_classes=3))
NAMES = [t.name for t in TASKS]
SIZE = 32
SQUEEZE_BLOCKS = ["preprocess", *(f"features.{i}" for i in range(13))]
RESNET_BLOCKS = [
    "preprocess",
    "conv1",
    "bn1",
    "act1",
    "maxpool",
    *(f"layer{stage}.{block}" for stage in (1, 2, 3, 4) for block in (0, 1)),
]
# (backbone, split point, what the task branches are made of)
NAMED_SPLITS = [
    (SQUEEZE, "features.11", ["features.11", "features.12"]),
    (RESNET, "layer3", ["layer3.0", "layer3.1", "layer4.0", "layer4.1"]),
]
SPLIT_IDS = ["squeezenet1_1@features.11", "resnet18@layer3"]


def spec_for(name: str, split: int | str | None, channels: int = 1, **args: object) -> ModelSpec:
    return ModelSpec(
        tasks=TASKS,
        backbone=name,
        backbone_args=BACKBONES.get(name).recorded_args(name, args),
        shared_depth=split,
        head_hidden=8,
        inputs=(ImageInput("image", SIZE, channels),),
    )


def dataset(n: int = 8, channels: int = 1, seed: int = 0) -> MultiTaskDataset:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, SIZE, SIZE, channels), dtype=np.uint8)
    labels = np.stack([rng.integers(0, 2, n), rng.integers(0, 3, n)], axis=1)
    return MultiTaskDataset({"image": images}, labels.astype(np.float32))


def images(n: int = 4, channels: int = 1) -> torch.Tensor:
    return torch.rand(n, channels, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def unit_norm_weights(model: nn.Module) -> None:
    """timm zero-initialises the last BatchNorm of every residual block (``zero_init_last``),
    which zeroes the gradient of the block's other weights at initialisation; pretrained
    weights are never like that."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


# -- names and blocks -----------------------------------------------------------------------


def test_zoo_names_resolve_to_their_family() -> None:
    assert BACKBONES.get(RESNET) is TimmBackbone
    assert BACKBONES.get("timm/resnet18.a1_in1k") is TimmBackbone
    assert BACKBONES.get(SQUEEZE) is TorchvisionBackbone
    assert RESNET in BACKBONES and SQUEEZE in BACKBONES
    assert {"timm/<name>", "torchvision/<name>"} <= set(BACKBONES.names())
    backbone = BACKBONES.get(SQUEEZE).create(SQUEEZE, in_channels=1)
    assert isinstance(backbone, TorchvisionBackbone)
    assert (backbone.model, backbone.in_channels) == ("squeezenet1_1", 1)
    assert repr(backbone) == "torchvision/squeezenet1_1(in_channels=1)"


@pytest.mark.parametrize(
    ("name", "blocks", "depth", "out_features"),
    [(SQUEEZE, SQUEEZE_BLOCKS, 13, 512), (RESNET, RESNET_BLOCKS, 5, 512)],
    ids=["squeezenet1_1", "resnet18"],
)
def test_network_opens_into_blocks_named_by_module_path(
    name: str, blocks: list[str], depth: int, out_features: int
) -> None:
    backbone = BACKBONES.get(name).create(name, in_channels=1)
    assert backbone.block_names() == blocks
    assert backbone.depth == depth
    assert backbone.out_features == out_features
    built = backbone.build_blocks()
    assert len(built) == len(blocks)
    assert isinstance(built[0], Preprocess)
    x = images(2)
    features = backbone.build_pool()(nn.Sequential(*built).eval()(x))
    assert features.shape == (2, out_features)


@pytest.mark.parametrize(("name", "split", "branch_blocks"), NAMED_SPLITS, ids=SPLIT_IDS)
def test_a_named_split_point_starts_the_task_branches(
    name: str, split: str, branch_blocks: list[str]
) -> None:
    model = build_model(spec_for(name, split))
    trunk_names = model.block_names[: len(model.trunk)]
    assert model.block_names[len(model.trunk) :] == branch_blocks
    assert model.shared_depth == len(trunk_names) == model.block_names.index(branch_blocks[0])
    assert isinstance(model.trunk[0], Preprocess)
    assert model.branches is not None and sorted(model.branches) == ["a", "b"]
    # the branches begin with the named module itself, the trunk ends right before it
    network = BACKBONES.get(name).network(name.partition("/")[2])
    for branch in model.branches.values():
        assert len(branch) == len(branch_blocks)
        for block, path in zip(branch, branch_blocks, strict=True):
            assert type(block) is type(network.get_submodule(path))
    assert trunk_names[-1] == {"features.11": "features.10", "layer3": "layer2.1"}[split]
    assert type(model.trunk[-1]) is type(network.get_submodule(trunk_names[-1]))
    outputs = model.eval()(images(3))
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {"a": (3, 1), "b": (3, 3)}


@pytest.mark.parametrize(("name", "split", "branch_blocks"), NAMED_SPLITS, ids=SPLIT_IDS)
def test_one_training_step_reaches_every_parameter(
    name: str, split: str, branch_blocks: list[str]
) -> None:
    model = build_model(spec_for(name, split))
    unit_norm_weights(model)
    before = snapshot(model)
    assert {n.partition(".")[0] for n in before} == {"trunk", "branches", "heads"}
    ds = dataset()
    trainer = Trainer(model, build_weighting("equal", NAMES), epochs=1, lr=1e-2)
    result = trainer.fit(make_loader(ds, 8, shuffle=True), make_loader(ds, 8, shuffle=False))
    assert len(result.history) == 1 and np.isfinite(result.history[0].train_loss)
    no_gradient = [
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p, before[n])]
    assert no_gradient == []
    assert unchanged == []


# -- split points ----------------------------------------------------------------------------


def test_an_int_split_counts_the_network_stages() -> None:
    resnet = BACKBONES.get(RESNET).create(RESNET, in_channels=1)
    # timm's feature stages: act1 (stride 2), layer1, layer2, layer3, layer4
    assert [resnet.split_index(k) for k in range(6)] == [0, 4, 7, 9, 11, 13]
    assert resnet.split_index(2) == resnet.split_index("layer2") == 7
    by_count = build_model(spec_for(RESNET, 2))
    by_name = build_model(spec_for(RESNET, "layer2"))
    assert by_count.shared_depth == by_name.shared_depth == 7
    assert by_count.block_names[7] == "layer2.0"
    assert build_model(spec_for(RESNET, 5)).branches is None  # every stage shared
    with pytest.raises(ValueError, match=r"shared_depth must be in 0\.\.5, got 6"):
        resnet.split_index(6)
    # torchvision: the top-level layers with ``features`` opened, one stage per module
    squeeze = BACKBONES.get(SQUEEZE).create(SQUEEZE, in_channels=1)
    assert squeeze.depth == 13
    assert all(squeeze.split_index(k) == squeeze.split_index(f"features.{k}") for k in range(1, 13))


@pytest.mark.parametrize(
    ("name", "split", "listed"),
    [
        (SQUEEZE, "features.99", "split points: preprocess, features.0, features.1, features.2"),
        (RESNET, "layer3.0.conv1", "layer2.1, layer3.0, layer3.1"),  # inside a block
        (RESNET, "layer", "layer1.0, layer1.1, layer2.0"),  # a name prefix is not a module
        (RESNET, "fc", "split points: preprocess, conv1, bn1, act1, maxpool, layer1.0"),
    ],
)
def test_an_unknown_split_point_lists_the_split_points(name: str, split: str, listed: str) -> None:
    with pytest.raises(ValueError, match=rf"'{split}' is not a block of {name}.*") as info:
        build_model(spec_for(name, split))
    assert listed in str(info.value)


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        ("timm/no_such_net", ValueError, "unknown timm model 'no_such_net'; see timm.list_models"),
        (
            "torchvision/no_such_net",
            ValueError,
            "unknown torchvision model 'no_such_net'; see torchvision.models.list_models",
        ),
        ("zoo/resnet18", UnknownNameError, "unknown backbone 'zoo/resnet18'; available: cnn"),
    ],
)
def test_an_unknown_model_name_is_a_clear_error(
    name: str, error: type[Exception], message: str
) -> None:
    spec = ModelSpec(tasks=TASKS, backbone=name, inputs=(ImageInput("image", SIZE, 1),))
    with pytest.raises(error, match=message.replace(".", r"\.")):
        build_model(spec)


def test_unknown_family_error_lists_the_families() -> None:
    with pytest.raises(UnknownNameError, match=r"timm/<name>, torchvision/<name>"):
        BACKBONES.get("zoo/resnet18")


def test_bad_channel_count_or_input_size_is_refused() -> None:
    with pytest.raises(ValueError, match="reads 1- or 3-channel images, not 2"):
        BACKBONES.get(SQUEEZE).create(SQUEEZE, in_channels=2)
    with pytest.raises(ValueError, match="input_size must be at least 16 pixels, got 8"):
        BACKBONES.get(SQUEEZE).create(SQUEEZE, input_size=8)


def test_a_network_whose_forward_does_more_than_its_layers_is_refused() -> None:
    """DenseNet applies a ReLU after ``features`` in its forward, outside any layer."""
    for _ in range(2):  # refused every time, not only the first
        with pytest.raises(ValueError, match="does more in its forward than run its layers"):
            BACKBONES.get("torchvision/densenet121").create("torchvision/densenet121")


# -- input handling ------------------------------------------------------------------------


@pytest.mark.parametrize("name", [SQUEEZE, RESNET])
def test_one_channel_input_equals_the_image_repeated_to_three_channels(name: str) -> None:
    grey = build_model(spec_for(name, None, channels=1)).eval()
    rgb = build_model(spec_for(name, None, channels=3)).eval()
    rgb.load_state_dict(grey.state_dict())
    x = images(4, channels=1)
    out_grey, out_rgb = grey(x), rgb(x.repeat(1, 3, 1, 1))
    assert {k: tuple(v.shape) for k, v in out_grey.items()} == {"a": (4, 1), "b": (4, 3)}
    for task in NAMES:
        torch.testing.assert_close(out_grey[task], out_rgb[task])
    # block 0 repeats the channel and normalises with the weights' mean and std
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(grey.trunk[0](x), (x.repeat(1, 3, 1, 1) - mean) / std)


def test_input_size_resizes_before_the_network() -> None:
    resized = build_model(spec_for(SQUEEZE, "features.11", input_size=64)).eval()
    plain = build_model(spec_for(SQUEEZE, "features.11")).eval()
    plain.load_state_dict(resized.state_dict())
    x = images(2)
    assert resized.trunk[0](x).shape == (2, 3, 64, 64)
    assert plain.trunk[0](x).shape == (2, 3, SIZE, SIZE)
    upsampled = F.interpolate(x, size=(64, 64), mode="bilinear", antialias=True)
    expected, got = plain(upsampled), resized(x)
    for task in NAMES:
        torch.testing.assert_close(got[task], expected[task])
    assert not torch.allclose(plain(x)["b"], got["b"])  # the resize mattered


def test_recorded_args_put_the_normalisation_into_the_spec() -> None:
    args = {"input_size": 48}
    recorded = TorchvisionBackbone.recorded_args(SQUEEZE, args)
    assert recorded == {
        "input_size": 48,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
    }
    assert args == {"input_size": 48}  # not changed in place
    json.dumps(recorded)  # goes into model_spec.json
    timm_cfg = BACKBONES.get(RESNET).network("resnet18").pretrained_cfg
    assert TimmBackbone.recorded_args(RESNET, {}) == {
        "mean": list(timm_cfg["mean"]),
        "std": list(timm_cfg["std"]),
    }
    own = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    assert TorchvisionBackbone.recorded_args(SQUEEZE, own) == own  # given values are kept
    model = build_model(spec_for(SQUEEZE, "features.11", **own))
    preprocess = model.trunk[0]
    torch.testing.assert_close(preprocess.mean.flatten(), torch.tensor(own["mean"]))
    torch.testing.assert_close(preprocess.std.flatten(), torch.tensor(own["std"]))


# -- checkpoints -----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "split", "branch_blocks"), NAMED_SPLITS, ids=SPLIT_IDS)
def test_checkpoint_round_trip_rebuilds_from_the_spec_without_weights(
    name: str, split: str, branch_blocks: list[str], tmp_path: Path, monkeypatch
) -> None:
    spec = spec_for(name, split, input_size=40)
    model = build_model(spec)
    model.train()(images(8))  # BatchNorm statistics move away from their initial values
    model.eval()

    def no_library_weights(cls, model: str) -> dict:
        raise AssertionError("serving must not fetch library weights")

    for family in (TimmBackbone, TorchvisionBackbone):
        monkeypatch.setattr(family, "library_weights", classmethod(no_library_weights))
    save_checkpoint(model, spec, tmp_path)
    recorded = json.loads((tmp_path / SPEC_FILE).read_text())
    assert recorded["backbone"] == name and recorded["shared_depth"] == split
    assert recorded["backbone_args"]["mean"] == list(IMAGENET_MEAN)
    loaded, loaded_spec = load_checkpoint(tmp_path / "model.pt", tmp_path / SPEC_FILE)
    assert loaded_spec == spec
    assert isinstance(loaded, MultiTaskModel) and not loaded.training
    assert loaded.block_names[loaded.shared_depth :] == branch_blocks
    x = images(4)
    expected, got = model(x), loaded(x)
    for task in NAMES:
        torch.testing.assert_close(got[task], expected[task], rtol=0, atol=0)
    fresh = build_model(spec).eval()  # a model that did not load the weights differs
    assert not torch.allclose(fresh(x)["b"], expected["b"])


# -- training options ------------------------------------------------------------------------

ACCELERATIONS = {
    "fp32": Acceleration(),
    "bf16-channels-last": Acceleration.for_device(
        torch.device("cpu"), precision="bf16", channels_last=True
    ),
}


def test_cpu_acceleration_asks_for_bf16_and_channels_last() -> None:
    accel = ACCELERATIONS["bf16-channels-last"]
    assert (accel.bf16, accel.channels_last, accel.compile) == (True, True, False)


def step_changes_every_parameter(
    name: str, split: str, method: str, accel: Acceleration
) -> MultiTaskModel:
    model = build_model(spec_for(name, split))
    unit_norm_weights(model)
    before = snapshot(model)
    trainer = Trainer(model, build_weighting(method, NAMES), epochs=1, lr=1e-2, acceleration=accel)
    stats = trainer.train_epoch(make_loader(dataset(), 8, shuffle=True))
    assert np.isfinite(stats.loss)
    assert torch.isfinite(stats.task_losses).all()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == set(before)
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())
    return model


@pytest.mark.parametrize("accel", list(ACCELERATIONS), ids=list(ACCELERATIONS))
@pytest.mark.parametrize("method", ["equal", "uw", "upgrad", "pcgrad"])
def test_weighting_methods_and_accelerations_train_a_zoo_backbone(method: str, accel: str) -> None:
    model = step_changes_every_parameter(SQUEEZE, "features.11", method, ACCELERATIONS[accel])
    if ACCELERATIONS[accel].channels_last:
        conv = model.trunk[1]
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_gradient_method_under_bf16_trains_a_timm_backbone() -> None:
    step_changes_every_parameter(RESNET, "layer3", "upgrad", ACCELERATIONS["bf16-channels-last"])


def test_a_zoo_backbone_builds_from_its_spec() -> None:
    spec = spec_for(RESNET, "layer4")
    backbone = build_backbone(spec)
    assert isinstance(backbone, TimmBackbone) and backbone.in_channels == 1
    assert backbone.mean == IMAGENET_MEAN and backbone.initial_state is None
    model = build_model(spec, backbone)
    assert model.block_names[model.shared_depth] == "layer4.0"
