"""``split``: train/val/test fractions and seed, or the column of a split the user already
has (README "Your own data")."""

from __future__ import annotations

from pydantic import Field, model_validator

from mtl_models.inputs import ColumnRef
from pipelines.config._base import Section

DEFAULT_FRACTIONS = {"train": 0.60, "val": 0.25, "test": 0.15}


class SplitConfig(Section):
    train: float = Field(DEFAULT_FRACTIONS["train"], gt=0, lt=1)
    val: float = Field(DEFAULT_FRACTIONS["val"], gt=0, lt=1)
    test: float = Field(DEFAULT_FRACTIONS["test"], gt=0, lt=1)
    seed: int = 42
    column: ColumnRef | None = Field(
        None, description="the table's column saying each row's split (train, val or test)"
    )

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitConfig:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1, got {total:g}")
        return self

    @model_validator(mode="after")
    def _fractions_or_column(self) -> SplitConfig:
        # fractions a user changed state sizes the column would silently contradict
        changed = [
            f"{k}: {getattr(self, k):g}"
            for k, default in DEFAULT_FRACTIONS.items()
            if abs(getattr(self, k) - default) > 1e-9
        ]
        if self.column is not None and changed:
            raise ValueError(
                f"split.column {self.column!r} decides each row's split, so the fractions are "
                f"not used: remove split.train/val/test or leave them at their defaults "
                f"0.6/0.25/0.15 (got {', '.join(changed)})"
            )
        return self

    def fractions(self) -> dict[str, float]:
        return {"train": self.train, "val": self.val, "test": self.test}
