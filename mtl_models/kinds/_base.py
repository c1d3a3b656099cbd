"""The base class of task kinds and their registry.

A kind says how a label is learned (head outputs, loss), decoded, scored, split and fitted.
Everything that differs between classification, ordinal ratings and regression lives in the
kind's own module; the rest of the code asks the kind (``TaskSpec.kind_plugin``) and never
tests a kind's name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np
from torch import Tensor

from mtl_models._registry import Registry
from mtl_models.losses import ClassWeighting

if TYPE_CHECKING:
    from mtl_models.tasks import TaskSpec

# A task has collapsed when this share of its predictions is one class while its labels are
# spread out (their most common class is below the same share).
COLLAPSE_SHARE = 0.95
# For continuous kinds: predictions whose spread is below this fraction of the labels' spread.
COLLAPSE_STD_RATIO = 0.05


class Decoded(NamedTuple):
    prediction: Tensor  # [B] class index (long) or value in original units (float)
    proba: Tensor | None  # [B, K] class probabilities where the kind has them


def article(word: str) -> str:
    """``word`` with its indefinite article, for messages ("an ordinal task")."""
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


class Kind(ABC):
    """One kind of label. Stateless: every method takes the task it works for.

    Subclasses set the class attributes and implement the abstract methods; register one with
    ``@KINDS.register("name")`` and tasks can declare ``kind: name``.
    """

    # Labels are class indices 0..n_classes-1 (class names, class weights, confusion matrices).
    discrete: ClassVar[bool]
    # The one metric per task that tuning, promotion and summaries compare (higher is better).
    primary_metric: ClassVar[str]
    # Effect -> largest tolerated magnitude of an augmentation, before the task's declarations.
    sensitivity: ClassVar[Mapping[str, float]] = {}

    @property
    def weighs_classes(self) -> bool:
        """Whether the loss takes per-class weights and a focal gamma."""
        return self.discrete

    # ---------------------------------------------------------------- validation
    def check(
        self,
        kind: str,
        n_classes: int | None,
        classes: Sequence[str] | None = None,
        class_weights: Sequence[float] | None = None,
        focal_gamma: float = 0.0,
    ) -> int | None:
        """The task's class count, or ``ValueError`` saying which field does not fit the kind.

        ``kind`` is the registered name, for messages.
        """
        if classes is not None:
            raise ValueError(f"{article(kind)} task takes no classes")
        if n_classes is not None:
            raise ValueError(f"{article(kind)} task has no n_classes")
        if class_weights is not None:
            raise ValueError(f"{article(kind)} task has no class weights")
        if focal_gamma:
            raise ValueError(f"focal_gamma must be >= 0, and 0 for {article(kind)} task")
        return None

    # ---------------------------------------------------------------- learning
    @abstractmethod
    def n_outputs(self, task: TaskSpec) -> int:
        """Width of the head's last layer."""

    @abstractmethod
    def loss(
        self,
        task: TaskSpec,
        outputs: Tensor,
        target: Tensor,
        class_weights: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """Mean loss over the samples ``mask`` keeps (all without one); ``target`` is float
        ``[B]`` and must hold a valid label wherever ``mask`` is 0 too (any class will do)."""

    @abstractmethod
    def decode(self, task: TaskSpec, outputs: Tensor) -> Decoded:
        """Prediction (and class probabilities where the kind has them) from raw outputs."""

    @abstractmethod
    def fit(self, task: TaskSpec, values: np.ndarray, class_weighting: ClassWeighting) -> TaskSpec:
        """``task`` with what its loss learns from the training labels ``values`` (NaN-free)."""

    # ---------------------------------------------------------------- scoring
    @abstractmethod
    def scores(self, task: TaskSpec, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
        """The kind's metrics over labelled samples; holds ``primary_metric``."""

    @abstractmethod
    def majority(self, values: np.ndarray) -> float:
        """What a constant baseline predicts from labels (NaN-free, non-empty)."""

    @abstractmethod
    def collapsed(self, y: np.ndarray, p: np.ndarray) -> bool:
        """Whether predictions ``p`` barely vary while the labels ``y`` do."""

    def baseline_metrics(self, baseline: Mapping[str, float]) -> dict[str, float]:
        """Extra metrics.json entries from the majority baseline's scores."""
        return {}

    def evaluate(
        self, task: TaskSpec, y: np.ndarray, p: np.ndarray, majority: float | None = None
    ) -> dict[str, Any]:
        """``score``, ``majority_baseline``, ``collapsed`` and the kind's metrics over labelled
        samples (``y`` non-empty); ``majority`` defaults to the baseline of ``y``."""
        majority = self.majority(y) if majority is None else majority
        scores = self.scores(task, y, p)
        baseline = self.scores(task, y, np.full_like(y, majority))
        return {
            **self.baseline_metrics(baseline),
            "score": scores[self.primary_metric],
            "majority_baseline": baseline[self.primary_metric],
            "collapsed": bool(self.collapsed(y, p)),
            **scores,
        }

    # ---------------------------------------------------------------- data
    @abstractmethod
    def strata(self, task: TaskSpec, values: np.ndarray) -> np.ndarray:
        """``[N, C]`` int8 indicator columns that a stratified split balances; a labelled row
        has exactly one 1, a missing label (NaN) none."""

    @abstractmethod
    def invalid_label_rows(self, task: TaskSpec, labels: np.ndarray) -> np.ndarray:
        """Indices of present labels that the task cannot accept (NaN = missing is fine)."""

    @abstractmethod
    def expected_labels(self, task: TaskSpec) -> str:
        """Human-readable description of a valid label, for error messages."""

    def diagnosis_hint(self, task: TaskSpec) -> str | None:
        """Advice for a collapsed task of this kind, beyond class weighting."""
        return None


KINDS: Registry[Kind] = Registry("task kind")


def get_kind(name: str) -> Kind:
    """The registered kind ``name``; an unknown name fails listing the available ones."""
    return KINDS.get(name)()
