"""Pipeline stages: plain functions (params + paths in, files out) that every entry point calls."""

from pipelines.stages.augment import augment
from pipelines.stages.baselines import baselines
from pipelines.stages.evaluate import evaluate
from pipelines.stages.prepare import prepare
from pipelines.stages.register import register
from pipelines.stages.split import split
from pipelines.stages.train import train
from pipelines.stages.tune import tune

__all__ = ["augment", "baselines", "evaluate", "prepare", "register", "split", "train", "tune"]
