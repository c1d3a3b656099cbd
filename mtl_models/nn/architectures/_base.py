"""The multi-task model's interface: how an architecture shares a backbone between tasks.

Every architecture builds from the same parts: the backbone split at ``shared_depth`` into a
shared stem (``trunk``) and the blocks after it, the backbone's pooling, and one head per
task. What sits between stem and heads is the architecture's own (task branches, experts and
gates, attention, stitched columns). What the trainer, task affinity and the gradient methods
need from it goes through this class, never through an architecture's name:

- ``forward_with_features``: outputs per task and the *features*, the tensors where the part
  every task depends on hands over to the task-specific part (torchjd's ``mtl_backward``
  back-propagates the per-task Jacobian through them). They form a cut: no feature lies
  upstream of another, or a path would be counted twice;
- ``shared_parameters``: the parameters upstream of the features (what the gradient methods
  combine and lookahead affinity steps);
- ``backbone_modules``: the modules built from the backbone (fine-tuning's learning rate);
- ``gate_weights``: for gated mixtures, which experts each task used in the last forward.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mtl_models._registry import Registry
from mtl_models.nn.backbones import Backbone
from mtl_models.nn.heads import Decoded, TaskHead, build_head
from mtl_models.tasks import TaskSpec

Inputs = Tensor | dict[str, Tensor]
Features = Tensor | tuple[Tensor, ...]


class MultiTaskModel(nn.Module, ABC):
    """One batch of inputs -> raw outputs per task. The batch is a tensor for one input
    (images ``[B, C, H, W]`` in [0, 1], signals ``[B, C, L]``, features ``[B, F]``) or a
    dict of them by input name for several (a fusion backbone).

    ``shared_depth`` (a stage count, or the name of a block) splits the backbone: the blocks
    before it are the stem all tasks share; the architecture decides what the blocks after it
    become. ``example`` is a small batch shaped like the real ones: architectures that size a
    layer by what a block puts out (a gate, an attention mask) run it once to find out.
    Hyperparameters are the subclass's own keyword arguments (typed, with defaults): the
    configuration (``model.architecture``) is derived from them.
    """

    name: ClassVar[str] = ""  # the registered name (``ARCHITECTURES``)

    def __init__(
        self,
        tasks: Sequence[TaskSpec],
        backbone: Backbone,
        shared_depth: int | str | None = None,
        head_hidden: int = 64,
        dropout: float = 0.0,
        example: Inputs | None = None,
    ):
        super().__init__()
        if not tasks:
            raise ValueError("a multi-task model needs at least one task")
        names = [t.name for t in tasks]
        if len({task_key(n) for n in names}) != len(names):
            raise ValueError(
                f"task names must be unique (a name and its name_ collide), got {names}"
            )
        self.block_names = backbone.block_names()
        total = len(self.block_names)
        shared = backbone.split_index(shared_depth)
        problem = self.split_problem(shared, total)
        if problem:
            raise ValueError(f"architecture '{self.name}': {problem}")
        self.tasks = tuple(tasks)
        self.shared_depth = shared  # blocks in the stem
        # block count after each stage: where stage-wise architectures attach their layers
        ends = {backbone.split_index(i) for i in range(1, backbone.depth + 1)}
        self.stage_ends = sorted(e for e in ends if 0 < e <= total)
        self.trunk = nn.Sequential(*backbone.blocks()[:shared])
        self.pool = backbone.build_pool()
        self.heads = nn.ModuleDict(
            {
                task_key(t.name): build_head(t, backbone.out_features, head_hidden, dropout)
                for t in tasks
            }
        )

    @classmethod
    def split_problem(cls, shared: int, total: int) -> str | None:
        """Why the architecture cannot use a split sharing ``shared`` of ``total`` blocks
        (None: it can). Asked by the configuration and before training as well."""
        return None

    @classmethod
    def shares_parameters(cls, shared: int, total: int) -> bool:
        """Whether some parameters feed every task for this split (gradient methods and
        affinity need some)."""
        return True

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def hyperparameters(self) -> dict[str, Any]:
        """The architecture's own arguments (what ``model.architecture`` holds besides name)."""
        return {}

    def extra_repr(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"shared_depth={self.shared_depth}" + (f", {args}" if args else "")

    def forward(self, inputs: Inputs) -> dict[str, Tensor]:
        return self.forward_with_features(inputs)[0]

    def forward_with_features(self, inputs: Inputs) -> tuple[dict[str, Tensor], Features]:
        """Outputs per task and the features (see the module docstring)."""
        representations, features = self.represent(inputs)
        outputs = {name: self.head(name)(representations[name]) for name in self.task_names}
        return outputs, features

    @abstractmethod
    def represent(self, inputs: Inputs) -> tuple[dict[str, Tensor], Features]:
        """Each task's flat representation ``[B, out_features]`` (its head's input) and the
        features where the shared part hands over to the task-specific part."""

    @abstractmethod
    def shared_modules(self) -> list[nn.Module]:
        """The modules upstream of the features: every task depends on them."""

    def shared_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters every task's output depends on (frozen ones excluded)."""
        return [p for m in self.shared_modules() for p in m.parameters() if p.requires_grad]

    @abstractmethod
    def backbone_modules(self) -> list[nn.Module]:
        """The modules built from the backbone (stem, branches, experts, columns)."""

    def gate_weights(self) -> dict[str, Tensor] | None:
        """``{task: [E]}`` mean gate weight per expert in the last forward pass (a gated
        mixture); None for architectures without gates."""
        return None

    def expert_names(self) -> list[str]:
        """The experts ``gate_weights`` weigh, in order."""
        return []

    def head(self, name: str) -> TaskHead:
        head = self.heads[task_key(name)]
        assert isinstance(head, TaskHead)
        return head

    def task_loss_terms(self, outputs: dict[str, Tensor], labels: Tensor) -> list[Tensor]:
        """One scalar loss per task: its mean over the samples labelled for it.

        ``labels`` is ``[B, T]`` float with NaN for a missing label. Missing labels are masked
        rather than indexed away, so the step needs no device-to-host sync; a task with no
        labelled sample in the batch contributes a zero that is still connected to the graph,
        so every parameter keeps receiving a (zero) gradient. The terms stay separate tensors
        (not views of one stacked tensor) so each can be back-propagated on its own.
        """
        terms = []
        for t, name in enumerate(self.task_names):
            target = labels[:, t]
            present = ~torch.isnan(target)
            filled = torch.where(present, target, torch.zeros_like(target))  # any valid label
            terms.append(self.head(name).loss(outputs[name], filled, present.to(target.dtype)))
        return terms

    def task_losses(self, outputs: dict[str, Tensor], labels: Tensor) -> Tensor:
        """Per-task losses stacked into ``[T]`` (see ``task_loss_terms``)."""
        return torch.stack(self.task_loss_terms(outputs, labels))

    @torch.no_grad()
    def decode(self, outputs: dict[str, Tensor]) -> dict[str, Decoded]:
        return {name: self.head(name).decode(out) for name, out in outputs.items()}

    # helpers for subclasses

    def copy_blocks(self, backbone: Backbone, start: int, stop: int) -> nn.Sequential:
        """A new copy of the backbone's blocks ``start:stop`` (its starting weights too)."""
        return nn.Sequential(*backbone.blocks()[start:stop])

    def task_branches(self, backbone: Backbone) -> nn.ModuleDict | None:
        """Per task, a copy of the blocks after the split point (None when there are none)."""
        total = len(self.block_names)
        if self.shared_depth == total:
            return None
        return nn.ModuleDict(
            {
                task_key(t.name): self.copy_blocks(backbone, self.shared_depth, total)
                for t in self.tasks
            }
        )

    def stage_groups(self, start: int, stop: int) -> list[tuple[int, int]]:
        """The blocks ``start:stop`` cut at the backbone's stage ends: ``[(a, b), ...]``."""
        cuts = [e for e in self.stage_ends if start < e < stop] + [stop]
        return list(zip([start, *cuts[:-1]], cuts, strict=True))

    def probe(self, example: Inputs | None, run: Callable[[Inputs], Any]) -> Any:
        """``run(example)`` without gradients or statistics updates (sizes a layer)."""
        if example is None:
            raise ValueError(
                f"architecture '{self.name}' sizes its layers from an example batch; "
                "build it with build_model or pass example="
            )
        with torch.no_grad(), evaluating(self):
            return run(example)


ARCHITECTURES: Registry[MultiTaskModel] = Registry("architecture")


def register(name: str) -> Callable[[type[MultiTaskModel]], type[MultiTaskModel]]:
    """Register an architecture under ``name`` (and record the name on the class)."""

    def decorator(cls: type[MultiTaskModel]) -> type[MultiTaskModel]:
        cls.name = name
        return ARCHITECTURES.register(name)(cls)

    return decorator


@contextmanager
def evaluating(module: nn.Module) -> Iterator[None]:
    was = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was)


def task_key(task: str) -> str:
    """The task's key in the model's module dicts: its name, unless that is an attribute
    of ``nn.Module`` (a task called ``type`` or ``eval``), which gets a trailing ``_``
    (task names ending in ``_`` are refused when they would collide)."""
    return f"{task}_" if hasattr(nn.ModuleDict, task) else task


def summarize(x: Inputs) -> Tensor:
    """``[B, F]`` summary of a block's output (mean over positions; inputs concatenated):
    what a gate reads to choose experts."""
    if isinstance(x, dict):
        return torch.cat([summarize(v) for v in x.values()], dim=1)
    return x.flatten(2).mean(2) if x.dim() > 2 else x


def handoff(x: Inputs) -> Inputs:
    """A new graph node for a shared tensor that task-specific layers read, so the features
    stay a cut (the shared layers after it read ``x``, the task's layers read this)."""
    if isinstance(x, dict):
        return x
    return x.view_as(x)


def needs_grad(*tensors: Inputs) -> tuple[Tensor, ...]:
    """The tensors that carry a gradient back to shared parameters (a raw input does not)."""
    return tuple(t for t in tensors if isinstance(t, Tensor) and t.requires_grad)


def mix(weights: Tensor, stacked: Tensor) -> Tensor:
    """``sum_e weights[:, e] * stacked[:, e]`` for ``[B, E]`` weights, ``[B, E, ...]`` outputs."""
    return (weights.view(*weights.shape, *([1] * (stacked.dim() - 2))) * stacked).sum(1)
