"""``split``: train/val/test fractions and seed."""

from __future__ import annotations

from pydantic import Field, model_validator

from pipelines.config._base import Section


class SplitConfig(Section):
    train: float = Field(0.60, gt=0, lt=1)
    val: float = Field(0.25, gt=0, lt=1)
    test: float = Field(0.15, gt=0, lt=1)
    seed: int = 42

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitConfig:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1, got {total:g}")
        return self

