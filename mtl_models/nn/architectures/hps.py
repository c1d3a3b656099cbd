"""Hard parameter sharing (Caruana, 1997, "Multitask learning"): one trunk, then a branch
per task from the split point on."""

from __future__ import annotations

from torch import Tensor, nn

from mtl_models.nn.architectures._base import (
    Features,
    Inputs,
    MultiTaskModel,
    register,
    task_key,
)
from mtl_models.nn.backbones import Backbone
from mtl_models.tasks import TaskSpec


@register("hps")
class HardSharing(MultiTaskModel):
    """The blocks before the split point are shared by all tasks; each task gets its own
    copy of the remaining blocks, then its head. ``shared_depth: null`` shares every block
    (the heads alone are per task); ``0`` trains independent networks side by side."""

    def __init__(
        self,
        tasks: tuple[TaskSpec, ...] | list[TaskSpec],
        backbone: Backbone,
        shared_depth: int | str | None = None,
        head_hidden: int = 64,
        dropout: float = 0.0,
        example: Inputs | None = None,
    ):
        super().__init__(tasks, backbone, shared_depth, head_hidden, dropout, example)
        self.branches = self.task_branches(backbone)

    @classmethod
    def shares_parameters(cls, shared: int, total: int) -> bool:
        return shared > 0

    def represent(self, inputs: Inputs) -> tuple[dict[str, Tensor], Features]:
        shared = self.trunk(inputs)
        if self.branches is None:
            features = self.pool(shared)  # computed once, read by every head
            return {name: features for name in self.task_names}, features
        representations = {
            name: self.pool(self.branches[task_key(name)](shared)) for name in self.task_names
        }
        # nothing shared (shared_depth 0): the raw inputs, a dict for several, are no feature
        return representations, shared if isinstance(shared, Tensor) else ()

    def shared_modules(self) -> list[nn.Module]:
        return [self.trunk]

    def backbone_modules(self) -> list[nn.Module]:
        return [self.trunk] + ([] if self.branches is None else [self.branches])
