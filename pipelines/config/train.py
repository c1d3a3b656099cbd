"""``train``: optimiser, schedule, loss weighting, class imbalance, affinity, hardware."""

from __future__ import annotations

import inspect
from typing import Annotated, Any, Literal, Union, get_type_hints

from pydantic import Field, create_model

from mtl_models.losses import ClassWeighting
from mtl_models.weighting import WEIGHTINGS
from pipelines.config._base import Section


def _weighting_union() -> Any:
    """One config model per registered weighting method, built from its typed ``__init__``.

    The registry stays the single source of methods and hyperparameters: a method added to
    ``mtl_models.weighting`` is configurable and validated here without further code.
    """
    models = []
    for name, cls in WEIGHTINGS.items():
        hints = get_type_hints(cls.__init__)
        fields: dict[str, Any] = {"method": (Literal[name], ...)}
        for param in inspect.signature(cls.__init__).parameters.values():
            if param.name in ("self", "task_names"):
                continue
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[param.name] = (hints[param.name], default)
        models.append(create_model(f"{cls.__name__}Config", __base__=Section, **fields))
    return Annotated[Union[tuple(models)], Field(discriminator="method")]  # noqa: UP007


WeightingConfig = _weighting_union()


class AffinityConfig(Section):
    """Lookahead inter-task affinity measured during training (README "Task affinity")."""

    enabled: bool = False
    every: int = Field(25, ge=1, description="measure on every k-th training batch")
    lr: float | None = Field(None, gt=0, description="lookahead step; null = the current lr")
    samples: int | None = Field(
        8, ge=1, description="first n samples of the batch measured on; null = all"
    )
    max_groups: int = Field(3, ge=1, description="task groups the grouping suggestion may use")


class FineTuneConfig(Section):
    """Fine-tuning the backbone (README "Pretrained backbones"); searchable by ``tune``."""

    freeze_epochs: int = Field(0, ge=0, description="first epochs in which the heads train alone")
    backbone_lr_scale: float = Field(
        1.0, gt=0, le=1, description="the backbone's learning rate as a fraction of train.lr"
    )
    freeze_batchnorm: bool = Field(
        False, description="keep the backbone's BatchNorm statistics and weights as loaded"
    )


class TrainConfig(Section):
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    patience: int | None = Field(8, ge=1, description="epochs without improvement; null = off")
    seed: int = 0
    device: str = "auto"
    num_workers: int = Field(
        0, ge=0, description="DataLoader processes running augmentation; 0 = in the trainer"
    )
    weighting: WeightingConfig = Field(
        default_factory=lambda: {"method": "equal"}, validate_default=True
    )
    # Class imbalance within each discrete task (README "Rare classes"); a task's own
    # class_weighting / focal_gamma wins. Regression tasks are never weighted.
    class_weighting: ClassWeighting = "none"
    focal_gamma: float = Field(0.0, ge=0, description="0 = plain cross-entropy")
    affinity: AffinityConfig = AffinityConfig()
    fine_tune: FineTuneConfig = FineTuneConfig()
    # joint: every batch trains every task labelled in it; alternating: tasks take turns,
    # each batch drawn from the rows labelled for its task (README "Your own data")
    schedule: Literal["joint", "alternating"] = "joint"
    # speed (README "Speed"): auto = bf16 autocast and channels-last images where the
    # hardware computes in bf16 (CUDA; CPUs with avx512_bf16 or AMX), else fp32;
    # compile = torch.compile the forward pass
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    channels_last: Literal["auto"] | bool = "auto"
    compile: bool = False
    # save the whole training state after every epoch (.mtlflow/train-checkpoint.pt) and
    # continue from it after a kill, into the same MLflow run; false = start over
    resume: bool = True

    def weighting_kwargs(self) -> dict[str, Any]:
        return self.weighting.model_dump(exclude={"method"})
