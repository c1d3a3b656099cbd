"""Data-parallel training under ``torchrun``: the process group, this process's rank and the
checks that refuse what DDP cannot do, before any work starts.

``torchrun --nproc_per_node N -m pipelines.cli train`` starts N copies of ``mtlflow train``;
each trains on its shard of every batch, DDP averages the gradients, and only rank 0 logs to
MLflow and writes files. Without torchrun's environment this is one process, as always.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist

from mtl_models.train.loaders import Shard
from mtl_models.train.trainer import resolve_device
from pipelines.config import Params
from pipelines.errors import ConfigError

DDP_STAGES = ("train",)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def check_stage(stage: str) -> None:
    """Only training is data-parallel; any other stage under torchrun would run N times."""
    if world_size() > 1 and stage not in DDP_STAGES:
        raise ConfigError(
            f"`{stage}` does not run under torchrun (WORLD_SIZE={world_size()}); only "
            f"{', '.join(DDP_STAGES)} is data-parallel: run the other stages in one process"
        )


def check_params(params: Params) -> None:
    """Refuse settings DDP cannot reproduce, naming the key (every weighting method runs:
    ``mtl_models.train.acceleration``)."""
    if params.train.schedule != "joint":
        raise ConfigError("train.schedule 'alternating' runs in one process, not under DDP")


@contextmanager
def process_group(params: Params) -> Iterator[Shard]:
    """This process's shard; under torchrun, the initialised process group (NCCL on GPUs,
    gloo on CPUs), destroyed afterwards."""
    if world_size() == 1:
        yield Shard()
        return
    check_params(params)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    gpu = resolve_device(params.train.device).type == "cuda"
    if gpu:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if gpu else "gloo")
    try:
        yield Shard(rank=rank, world_size=world_size())
    finally:
        dist.destroy_process_group()


def check_device(params: Params) -> None:
    """``train.device`` names a device this machine has (before any run is started):
    ``ConfigError`` naming the key and what there is otherwise."""
    name = params.train.device
    try:
        device = resolve_device(name)
    except RuntimeError as exc:
        raise ConfigError(f"train.device {name!r}: not a device ({exc})") from None
    available = {
        "cuda": torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count(),
        "mps": torch.backends.mps.is_available(),
        "cpu": True,
    }
    if not available.get(device.type, False):
        found = torch.cuda.device_count() if torch.cuda.is_available() else 0
        raise ConfigError(
            f"train.device {name!r}: this machine has no such device ({found} CUDA "
            "devices); use auto (CUDA when present, else CPU) or cpu"
        )


def device_for(params: Params, shard: Shard) -> torch.device:
    """``train.device``; under DDP on GPUs, this process's own GPU."""
    device = resolve_device(params.train.device)
    if shard.world_size > 1 and device.type == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device
