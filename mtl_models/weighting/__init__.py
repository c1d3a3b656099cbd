"""Loss weighting and gradient aggregation behind one interface (methods from torchjd).

Importing this package registers every method in ``WEIGHTINGS``:

- loss scalarisers, one backward pass: ``equal``, ``static``, ``uw``, ``imtl_l``, ``dwa``,
  ``famo``, ``stch``, ``rlw``, ``gls``;
- gradient aggregators, per-task gradients of the shared parameters: ``upgrad``, ``pcgrad``,
  ``cagrad``, ``mgda``, ``nash_mtl``, ``aligned_mtl``, ``gradvac``, ``imtl_g``, ``dualproj``,
  ``fairgrad``, ``config``.
"""

from mtl_models.weighting import _gradient, _loss  # noqa: F401  (registers the methods)
from mtl_models.weighting._base import (
    WEIGHTINGS,
    StepResult,
    WeightingMethod,
    build_weighting,
    check_weighting,
)
from mtl_models.weighting._gradient import AggregatorWeighting, gradient_cosine
from mtl_models.weighting._loss import ScalarizerWeighting, StaticWeighting

__all__ = [
    "WEIGHTINGS",
    "AggregatorWeighting",
    "ScalarizerWeighting",
    "StaticWeighting",
    "StepResult",
    "WeightingMethod",
    "build_weighting",
    "check_weighting",
    "gradient_cosine",
]
