"""In-memory datasets of inputs and multi-task labels, batching schedules, and the
uint8 image -> tensor conversion."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler

Transform = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
Inputs = Tensor | dict[str, Tensor]  # one input's batch, or several by name


def images_to_tensor(images: np.ndarray) -> Tensor:
    """uint8 ``[N, H, W, C]`` -> float ``[N, C, H, W]`` in [0, 1]. Training and serving share it."""
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images [N, H, W, C], got {images.dtype} {images.shape}")
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)


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


@dataclass(frozen=True)
class Shard:
    """This process's part of data-parallel training: rank ``rank`` of ``world_size``."""

    rank: int = 0
    world_size: int = 1


class ShardedBatches(Sampler[list[int]]):
    """The batches one process would draw, each split across the processes of a DDP run:
    rank r takes rows r, r + world_size, ... of every batch.

    Every rank draws torch's own shuffled batches from the same generator, the one the
    DataLoader also seeds its workers from, exactly as a one-process ``shuffle=True`` loader
    does: together the ranks train on the one-process batches (``batch_size`` is global).
    """

    def __init__(self, n: int, batch_size: int, shard: Shard, generator: torch.Generator):
        self.batches = BatchSampler(
            RandomSampler(range(n), generator=generator), batch_size, drop_last=False
        )
        self.shard = shard

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            yield batch[self.shard.rank :: self.shard.world_size]


def _worker_options(num_workers: int, pin_memory: bool) -> dict[str, Any]:
    """DataLoader options every training loader shares: worker processes that reseed their
    transform and stay alive between epochs, and pinned memory for GPU copies."""
    return {
        "num_workers": num_workers,
        "worker_init_fn": _reseed_worker_transform if num_workers else None,
        "persistent_workers": num_workers > 0,
        "pin_memory": pin_memory,
    }


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    num_workers: int = 0,
    pin_memory: bool = False,
    shard: Shard | None = None,
) -> DataLoader[tuple[Tensor, Tensor]]:
    """Batches in a seeded order; ``num_workers`` processes run the per-sample transform and
    stay alive between epochs; ``pin_memory`` for fast, non-blocking copies to a GPU; with a
    ``shard`` of a DDP run (``shuffle`` only), this process's part of every batch."""
    generator = torch.Generator().manual_seed(seed)
    common = {"generator": generator, **_worker_options(num_workers, pin_memory)}
    if shard is not None and shard.world_size > 1:
        if not shuffle:
            raise ValueError("a sharded loader is for training batches (shuffle=True)")
        sampler = ShardedBatches(len(dataset), batch_size, shard, generator)  # type: ignore[arg-type]
        return DataLoader(dataset, batch_sampler=sampler, **common)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, **common)


def to_tensor(array: np.ndarray) -> Tensor:
    """uint8 images ``[N, H, W, C]`` -> float ``[N, C, H, W]`` in [0, 1]; any other input
    (encoded signals, features) -> float32 as it is."""
    if array.dtype == np.uint8:
        return images_to_tensor(array)
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def model_inputs(tensors: Mapping[str, Tensor]) -> Inputs:
    """As the model reads them: the tensor of a lone input, else the dict of tensors by name."""
    return next(iter(tensors.values())) if len(tensors) == 1 else dict(tensors)


def batch_inputs(arrays: Mapping[str, np.ndarray]) -> Inputs:
    """A batch for the model: the tensor of a lone input, else a dict of tensors by name."""
    return model_inputs({name: to_tensor(a) for name, a in arrays.items()})


def to_device(inputs: Inputs, device: torch.device) -> Inputs:
    if isinstance(inputs, Tensor):
        return inputs.to(device, non_blocking=True)
    return {name: t.to(device, non_blocking=True) for name, t in inputs.items()}


def channels_last(inputs: Inputs) -> Inputs:
    """Image batches (4-D) in the channels-last layout; other inputs as they are."""

    def one(t: Tensor) -> Tensor:
        return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t

    return one(inputs) if isinstance(inputs, Tensor) else {k: one(v) for k, v in inputs.items()}


def head_of(inputs: Inputs, n: int | None) -> Inputs:
    """The first ``n`` samples of a batch (all for None)."""
    if isinstance(inputs, Tensor):
        return inputs[:n]
    return {name: t[:n] for name, t in inputs.items()}


class MultiTaskDataset(Dataset[tuple[Inputs, Tensor]]):
    """Named input arrays (uint8 images ``[N, H, W, C]``, float signals and features) with
    float labels ``[N, T]`` (NaN = missing).

    ``transform(image, labels)`` augments the image input ``image_input`` and may change
    the labels too, so a transform that moves a label (a flip that swaps left and right
    regions) can remap it. An index ``(row, task)`` keeps only that task's label: the
    alternating schedule trains one task per batch.
    """

    def __init__(
        self,
        inputs: Mapping[str, np.ndarray],
        labels: np.ndarray,
        transform: Transform | None = None,
        image_input: str | None = None,
    ):
        counts = {name: len(a) for name, a in inputs.items()}
        if not inputs or any(n != len(labels) for n in counts.values()):
            raise ValueError(f"input sample counts {counts} but {len(labels)} label rows")
        if transform is not None and image_input not in inputs:
            raise ValueError(f"a transform needs an image input; inputs are {sorted(inputs)}")
        self.inputs = dict(inputs)
        self.labels = labels.astype(np.float32)
        self.transform = transform
        self.image_input = image_input
        # without a transform every sample is fixed: convert once, index tensors
        self._tensors = (
            None
            if transform
            else ({n: to_tensor(a) for n, a in self.inputs.items()}, torch.from_numpy(self.labels))
        )

    def __len__(self) -> int:
        return len(self.labels)

    def _sample(self, row: int) -> tuple[Inputs, Tensor]:
        if self._tensors is not None:
            tensors, labels = self._tensors
            return model_inputs({n: t[row] for n, t in tensors.items()}), labels[row]
        assert self.transform is not None and self.image_input is not None
        arrays = {n: a[row : row + 1] for n, a in self.inputs.items()}
        image, label_row = self.transform(self.inputs[self.image_input][row], self.labels[row])
        arrays[self.image_input] = image[None]
        batch = batch_inputs(arrays)
        one = batch[0] if isinstance(batch, Tensor) else {n: t[0] for n, t in batch.items()}
        return one, torch.from_numpy(np.ascontiguousarray(label_row, np.float32))

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[Inputs, Tensor]:
        if isinstance(index, tuple):
            row, task = index
            inputs, labels = self._sample(row)
            only = torch.full_like(labels, float("nan"))
            only[task] = labels[task]
            return inputs, only
        return self._sample(index)


class AlternatingTaskBatches(Sampler[list[tuple[int, int]]]):
    """Batches that each train one task, on rows labelled for it, tasks taking turns.

    An epoch is as many rounds as the task with the most labelled rows needs; a task with
    fewer rows starts a fresh shuffle of its rows when it runs out, so every task gets one
    batch per round. Indices are ``(row, task)`` (see :class:`MultiTaskDataset`).
    """

    def __init__(self, labels: np.ndarray, batch_size: int, seed: int = 0):
        self.rows = [np.flatnonzero(~np.isnan(labels[:, t])) for t in range(labels.shape[1])]
        empty = [t for t, rows in enumerate(self.rows) if len(rows) == 0]
        if empty:
            raise ValueError(f"task column(s) {empty} have no labelled rows to alternate over")
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        self.rounds = max(-(-len(rows) // batch_size) for rows in self.rows)

    def __len__(self) -> int:
        return self.rounds * len(self.rows)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        queues: list[list[int]] = [[] for _ in self.rows]
        for _ in range(self.rounds):
            for task, rows in enumerate(self.rows):
                queue = queues[task]
                if len(queue) < min(self.batch_size, len(rows)):
                    # a fresh shuffle tops up the leftover, without repeating a row in a batch
                    leftover = set(queue)
                    queue.extend(
                        r for r in self.rng.permutation(rows).tolist() if r not in leftover
                    )
                batch, queues[task] = queue[: self.batch_size], queue[self.batch_size :]
                yield [(row, task) for row in batch]


def make_schedule_loader(
    dataset: MultiTaskDataset,
    batch_size: int,
    *,
    schedule: str,
    seed: int = 0,
    num_workers: int = 0,
    pin_memory: bool = False,
    shard: Shard | None = None,
) -> DataLoader[tuple[Inputs, Tensor]]:
    """The training loader for a schedule: ``joint`` batches use every labelled row of every
    task at once; ``alternating`` batches train one task each, in turn (one process only)."""
    if schedule == "joint":
        return make_loader(
            dataset,
            batch_size,
            shuffle=True,
            seed=seed,
            num_workers=num_workers,
            pin_memory=pin_memory,
            shard=shard,
        )
    if schedule != "alternating":
        raise ValueError(f"unknown schedule '{schedule}'; available: joint, alternating")
    if shard is not None and shard.world_size > 1:
        raise ValueError("the alternating schedule runs in one process, not under DDP")
    return DataLoader(
        dataset,
        batch_sampler=AlternatingTaskBatches(dataset.labels, batch_size, seed),
        **_worker_options(num_workers, pin_memory),
    )


class MultiTaskImageDataset(MultiTaskDataset):
    """One image input: uint8 images ``[N, H, W, C]`` with labels ``[N, T]``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Transform | None = None):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} label rows")
        super().__init__({"image": images}, labels, transform, image_input="image")
        self.images = images
