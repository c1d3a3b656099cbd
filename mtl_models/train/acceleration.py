"""How a training step runs on its device: bf16 autocast, channels-last images,
``torch.compile`` and DistributedDataParallel. The trainer asks this object, never the device.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mtl_models.nn.model import MultiTaskModel
from mtl_models.train.loaders import Inputs, channels_last

Forward = Callable[[Inputs], tuple[dict[str, Tensor], Tensor]]


class _ForwardWithFeatures(nn.Module):
    """The model's ``forward_with_features`` as a module ``forward``, so DDP (which hooks
    ``forward``) and ``torch.compile`` see the whole step's forward pass."""

    def __init__(self, model: MultiTaskModel):
        super().__init__()
        self.model = model

    def forward(self, inputs: Inputs) -> tuple[dict[str, Tensor], Tensor]:
        return self.model.forward_with_features(inputs)


def bf16_supported(device: torch.device) -> bool:
    """bf16 autocast runs on ``device`` (on any CPU, natively or emulated)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu"


def bf16_native(device: torch.device) -> bool:
    """``device`` computes in bf16 in hardware: a CUDA GPU that supports it, or a CPU with
    avx512_bf16 or AMX (where bf16 + channels-last trained the default model 1.8x faster at
    mean test QWK 0.985 against 0.987 in fp32; benchmarks/README.md)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


class ProcessMean:
    """The mean of a tensor over the processes of a DDP run (every process gets it)."""

    @property
    def world_size(self) -> int:
        import torch.distributed as dist

        return dist.get_world_size()

    def __call__(self, tensor: Tensor) -> Tensor:
        import torch.distributed as dist

        total = tensor.detach().clone()
        dist.all_reduce(total)
        return total / self.world_size


@dataclass(frozen=True)
class Acceleration:
    """Step options; all off is plain fp32 eager PyTorch on one process.

    - ``bf16``: autocast the forward pass and losses to bfloat16 (weights and optimiser stay
      fp32; no loss scaling is needed, unlike fp16).
    - ``channels_last``: NHWC memory layout for 4-D image batches and the model, which
      tensor-core convolutions prefer.
    - ``compile``: ``torch.compile`` the forward pass (the first steps pay the compile time).
    - ``data_parallel``: wrap the forward pass in ``DistributedDataParallel``; the process
      group must be initialised (``torchrun``), each process trains on its shard of every
      batch and DDP averages the gradients.
    """

    bf16: bool = False
    channels_last: bool = False
    compile: bool = False
    data_parallel: bool = False

    @classmethod
    def for_device(
        cls,
        device: torch.device,
        precision: str = "auto",
        channels_last: bool | str = "auto",
        compile: bool = False,
        images: bool = True,
        data_parallel: bool = False,
    ) -> Acceleration:
        """The options a setting asks for on ``device``: ``auto`` means bf16 autocast and
        channels-last images where the hardware computes in bf16 (``bf16_native``; on a CPU,
        for models that read images), plain fp32 elsewhere (``precision``: auto, fp32, bf16;
        channels-last only where the model reads ``images``)."""
        # measured on convolutions over images; a small MLP on a table gains nothing on a CPU
        native = bf16_native(device) and (device.type == "cuda" or images)
        bf16 = precision == "bf16" or (precision == "auto" and native)
        wanted = (device.type == "cuda" or bf16) if channels_last == "auto" else channels_last
        return cls(
            bf16=bf16,
            channels_last=bool(wanted) and images,
            compile=compile,
            data_parallel=data_parallel,
        )

    def describe(self) -> str:
        """``bf16, channels-last`` or ``fp32``: what a run prints beside its device."""
        on = [n for n, v in (("channels-last", self.channels_last), ("compile", self.compile)) if v]
        return ", ".join(["bf16" if self.bf16 else "fp32", *on])

    def forward(self, model: MultiTaskModel, device: torch.device) -> Forward:
        """The forward function the training step calls (the model moved and wrapped)."""
        if self.bf16 and not bf16_supported(device):
            raise ValueError(f"bf16 autocast is not supported on {device}")
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        step: nn.Module = _ForwardWithFeatures(model)
        if self.data_parallel:
            from torch.nn.parallel import DistributedDataParallel

            ids = [device] if device.type == "cuda" else None
            step = DistributedDataParallel(step, device_ids=ids)
        return torch.compile(step) if self.compile else step  # type: ignore[return-value]

    def global_losses(self, losses: Sequence[Tensor]) -> list[Tensor]:
        """Under DDP, each task loss takes the mean value over the processes while keeping
        this process's gradient: a method that weighs the losses by their values (UW, DWA,
        FAMO, GLS, ...) gives every process the weights one process would, and DDP's mean
        of the gradients is the one-process update. Unchanged in one process."""
        if not self.data_parallel:
            return list(losses)
        mean = ProcessMean()(torch.stack([loss.detach().float() for loss in losses]))
        return [
            m.to(loss.dtype) + (loss - loss.detach()) for m, loss in zip(mean, losses, strict=True)
        ]

    def own_reduction(
        self, step: nn.Module | Forward, manual: bool
    ) -> AbstractContextManager[object]:
        """A ``manual`` step, whose gradients the trainer averages itself (methods that take
        per-task gradients outside autograd's ``backward``): DDP's averaging is held off."""
        if not (self.data_parallel and manual):
            return nullcontext()
        module = getattr(step, "_orig_mod", step)  # under torch.compile
        return module.no_sync()  # type: ignore[union-attr]

    def average_gradients(self, parameters: Iterable[Tensor]) -> None:
        """Under DDP, every ``.grad`` becomes its mean over the processes (one all-reduce)."""
        if not self.data_parallel:
            return
        params = [p for p in parameters if p.grad is not None]
        flat = ProcessMean()(torch.cat([p.grad.flatten() for p in params]))
        start = 0
        for p in params:
            n = p.grad.numel()
            p.grad.copy_(flat[start : start + n].view_as(p.grad))
            start += n

    def autocast(self, device: torch.device) -> AbstractContextManager[object]:
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def layout(self, inputs: Inputs) -> Inputs:
        """Image batches (4-D) in channels-last layout when asked; anything else as it is."""
        return channels_last(inputs) if self.channels_last else inputs
