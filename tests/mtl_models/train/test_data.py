"""data: the uint8 -> tensor conversion, the dataset and its transform hook, the loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtl_models.train.loaders import MultiTaskImageDataset, images_to_tensor, make_loader

NAN = float("nan")


def test_images_to_tensor_layout_and_range() -> None:
    images = np.random.default_rng(0).integers(0, 256, (2, 3, 5, 4), dtype=np.uint8)
    images[0, 0, 0] = [0, 51, 255, 102]
    out = images_to_tensor(images)
    assert out.shape == (2, 4, 3, 5)  # [N, C, H, W]
    assert out.dtype == torch.float32
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([0.0, 0.2, 1.0, 0.4]))
    # each value lands at the permuted index
    torch.testing.assert_close(out * 255, torch.from_numpy(images).permute(0, 3, 1, 2).float())
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


@pytest.mark.parametrize(
    "images",
    [
        np.zeros((2, 4, 4, 1), dtype=np.float32),
        np.zeros((2, 4, 4, 1), dtype=np.uint16),
        np.zeros((4, 4, 1), dtype=np.uint8),
    ],
    ids=["float32", "uint16", "3-d"],
)
def test_images_to_tensor_rejects_other_inputs(images: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"expected uint8 images \[N, H, W, C\]"):
        images_to_tensor(images)


def test_dataset_items() -> None:
    images = np.arange(3 * 2 * 2, dtype=np.uint8).reshape(3, 2, 2, 1)
    labels = np.array([[0, 1.5], [NAN, 2.0], [1, NAN]])
    dataset = MultiTaskImageDataset(images, labels)
    assert len(dataset) == 3
    image, label = dataset[1]
    assert image.shape == (1, 2, 2)
    torch.testing.assert_close(image, images_to_tensor(images)[1])
    assert label.dtype == torch.float32
    assert bool(torch.isnan(label[0])) and float(label[1]) == 2.0


def test_dataset_applies_transform_to_image_and_labels() -> None:
    images = np.zeros((2, 2, 4, 1), dtype=np.uint8)
    images[:, :, 0] = 200  # bright left column
    labels = np.array([[1.0, 0.0], [1.0, NAN]])  # (left defect, right defect)
    calls: list[int] = []

    def mirror(image: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        calls.append(1)
        return image[:, ::-1], row[[1, 0]]  # the flip moves the left defect to the right

    dataset = MultiTaskImageDataset(images, labels, transform=mirror)
    image, label = dataset[0]
    assert calls == [1]
    torch.testing.assert_close(image[0, :, 3], torch.full((2,), 200 / 255))
    torch.testing.assert_close(image[0, :, 0], torch.zeros(2))
    torch.testing.assert_close(label, torch.tensor([0.0, 1.0]))
    assert torch.isnan(dataset[1][1][0])


def test_transform_may_return_a_reversed_label_view() -> None:
    images = np.zeros((1, 2, 4, 1), dtype=np.uint8)
    dataset = MultiTaskImageDataset(
        images, np.array([[1.0, 0.0]]), transform=lambda image, row: (image[:, ::-1], row[::-1])
    )
    torch.testing.assert_close(dataset[0][1], torch.tensor([0.0, 1.0]))


def test_dataset_rejects_length_mismatch() -> None:
    with pytest.raises(ValueError, match="3 images but 2 label rows"):
        MultiTaskImageDataset(np.zeros((3, 2, 2, 1), np.uint8), np.zeros((2, 1)))


def test_loader_order_is_seeded() -> None:
    dataset = MultiTaskImageDataset(
        np.zeros((20, 2, 2, 1), np.uint8), np.arange(20, dtype=float)[:, None]
    )

    def order(**kwargs: object) -> list[float]:
        loader = make_loader(dataset, 8, **kwargs)  # type: ignore[arg-type]
        return torch.cat([labels[:, 0] for _, labels in loader]).tolist()

    assert order(shuffle=False) == list(range(20))
    shuffled = order(shuffle=True, seed=3)
    assert shuffled == order(shuffle=True, seed=3)
    assert shuffled != order(shuffle=True, seed=4)
    assert sorted(shuffled) == list(range(20))
