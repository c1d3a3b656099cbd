"""In-memory datasets of images and multi-task labels, and the uint8 -> tensor conversion."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

Transform = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def images_to_tensor(images: np.ndarray) -> Tensor:
    """uint8 ``[N, H, W, C]`` -> float ``[N, C, H, W]`` in [0, 1]. Training and serving share it."""
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images [N, H, W, C], got {images.dtype} {images.shape}")
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)


class MultiTaskImageDataset(Dataset[tuple[Tensor, Tensor]]):
    """uint8 images ``[N, H, W, C]`` with float labels ``[N, T]`` (NaN = missing).

    ``transform(image, labels)`` may change both, so a transform that moves a label (a flip
    that swaps left and right regions) can remap it.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Transform | None = None):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} label rows")
        self.images = images
        self.labels = labels.astype(np.float32)
        self.transform = transform
        self._tensors = (
            None if transform else (images_to_tensor(images), torch.from_numpy(self.labels))
        )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if self._tensors is not None:
            return self._tensors[0][index], self._tensors[1][index]
        assert self.transform is not None
        image, labels = self.transform(self.images[index], self.labels[index])
        return images_to_tensor(image[None])[0], torch.from_numpy(
            np.ascontiguousarray(labels, np.float32)
        )


def _reseed_worker_transform(worker_id: int) -> None:
    """Give each worker's transform its own stream, new every epoch, reproducible from the seed.

    torch seeds every worker from the loader's generator (a fresh base seed per epoch); a
    transform with its own random state (albumentations) would otherwise repeat the main
    process's stream in every worker and every epoch.
    """
    info = torch.utils.data.get_worker_info()
    reseed = getattr(getattr(info.dataset, "transform", None), "reseed", None)
    if reseed is not None:
        reseed(info.seed % 2**32)


def make_loader(
    dataset: MultiTaskImageDataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    num_workers: int = 0,
) -> DataLoader[tuple[Tensor, Tensor]]:
    """Batches in a seeded order; ``num_workers`` processes run the per-sample transform."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=num_workers,
        worker_init_fn=_reseed_worker_transform if num_workers else None,
        persistent_workers=num_workers > 0,
    )
