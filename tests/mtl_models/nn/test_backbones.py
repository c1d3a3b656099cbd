"""backbones: the ConvNet's blocks, pooling and declared feature size."""

from __future__ import annotations

import pytest
import torch

from mtl_models.inputs import INPUTS
from mtl_models.nn.backbones import BACKBONES, MLP, ConvNet, ConvNet1d, Fusion


@pytest.mark.parametrize(
    ("kwargs", "image_size"),
    [
        ({"in_channels": 1, "width": 4, "depth": 1, "pool_size": 2}, 8),
        ({"in_channels": 3, "width": 2, "depth": 3, "pool_size": 1}, 8),
        ({"in_channels": 1, "width": 3, "depth": 4, "pool_size": 2}, 32),
    ],
    ids=["depth1", "rgb-depth3", "depth4"],
)
def test_out_features_matches_the_pooled_output(kwargs: dict[str, int], image_size: int) -> None:
    backbone = ConvNet(**kwargs)
    blocks = backbone.build_blocks()
    assert len(blocks) == backbone.depth
    x = torch.rand(2, kwargs["in_channels"], image_size, image_size)
    features = backbone.build_pool()(torch.nn.Sequential(*blocks)(x))
    assert features.shape == (2, backbone.out_features)


def test_channels_double_up_to_four_times_width() -> None:
    backbone = ConvNet(width=3, depth=4, pool_size=1)
    convs = [block[0] for block in backbone.build_blocks()]
    assert [conv.out_channels for conv in convs] == [3, 6, 12, 12]
    assert backbone.out_features == 12


def test_build_blocks_gives_fresh_modules() -> None:
    backbone = ConvNet(width=4, depth=2)
    first, second = backbone.build_blocks(), backbone.build_blocks()
    assert first[0][0].weight is not second[0][0].weight
    assert not torch.equal(first[0][0].weight, second[0][0].weight)


@pytest.mark.parametrize("field", ["in_channels", "width", "depth", "pool_size"])
def test_non_positive_arguments_raise(field: str) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        ConvNet(**{field: 0})


def test_repr_mentions_hyperparameters() -> None:
    assert repr(ConvNet(2, 8, 3, 1)) == "ConvNet(in_channels=2, width=8, depth=3, pool_size=1)"


def test_each_backbone_declares_the_input_kinds_it_reads() -> None:
    assert (ConvNet.reads, ConvNet1d.reads, MLP.reads) == ({"image"}, {"signal"}, {"features"})
    assert Fusion.reads == frozenset()  # it reads several inputs through their own encoders
    for kind, cls in INPUTS.items():  # every kind's default backbone reads it
        assert kind in BACKBONES.get(cls.backbone).reads
    assert MLP.can_read("mlp", "scalar", default_backbone="mlp")  # a kind naming it
    assert not MLP.can_read("mlp", "image", default_backbone="cnn")
