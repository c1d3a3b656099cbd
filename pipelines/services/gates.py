"""Gate weights of the gated architectures (MMoE, CGC/PLE, DSelect-k): which experts each
task uses, epoch by epoch. Tasks that lean on the same experts share; tasks on disjoint ones
have moved apart: a second view of task affinity, read off the trained model."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import mlflow
import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from mtl_models.train.trainer import Callback, EpochLog, Trainer
from pipelines.services.plots import log_figure

GateTable = dict[str, dict[str, float]]  # task -> expert -> mean gate weight


def overlap(gates: GateTable) -> np.ndarray:
    """``[T, T]`` share of gate weight two tasks put on the same experts (the sum over
    experts of the smaller of their two weights): 1 = same mixture, 0 = disjoint experts."""
    matrix = np.asarray([list(row.values()) for row in gates.values()])
    return np.minimum(matrix[:, None, :], matrix[None, :, :]).sum(-1)


def gate_heatmap(gates: GateTable, title: str) -> Figure:
    """Task x expert gate weights, and the tasks' overlap beside it."""
    tasks = list(gates)
    experts = list(next(iter(gates.values())))
    matrix = np.asarray([list(row.values()) for row in gates.values()])
    fig, (ax_gates, ax_overlap) = plt.subplots(
        1,
        2,
        figsize=(5 + 0.5 * len(experts) + 0.5 * len(tasks), 1.5 + 0.45 * len(tasks)),
        layout="constrained",
    )
    for ax, values, columns, label in (
        (ax_gates, matrix, experts, "gate weight"),
        (ax_overlap, overlap(gates), tasks, "shared gate weight"),
    ):
        image = ax.imshow(values, cmap="viridis", vmin=0, vmax=1, aspect="auto")
        for (i, j), value in np.ndenumerate(values):
            shade = "k" if value > 0.6 else "w"  # readable on viridis' light end
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6, color=shade)
        ax.set_xticks(range(len(columns)), columns, rotation=90, fontsize=7)
        ax.set_yticks(range(len(tasks)), tasks, fontsize=7)
        fig.colorbar(image, ax=ax, shrink=0.8, label=label)
    ax_gates.set_title(f"experts each task uses, {title}", fontsize=9)
    ax_overlap.set_title("tasks sharing experts", fontsize=9)
    return fig


class GateWeightsLogger(Callback):
    """Logs the gate heatmap as an MLflow image (key ``gate_weights``, step = epoch), so the
    UI steps through the epochs: every epoch up to ``images`` epochs, else every k-th and the
    last (a figure costs ~0.3 s, more than an epoch of a small table model)."""

    def __init__(self, images: int = 20):
        self.images = images
        self.every = 1
        self.epochs = 0

    def on_train_begin(self, trainer: Trainer) -> None:
        self.epochs = trainer.epochs
        self.every = max(1, math.ceil(trainer.epochs / self.images))

    def on_epoch_end(self, log: EpochLog) -> None:
        if not log.gate_weights:
            return
        if log.epoch % self.every and log.epoch != self.epochs:
            return
        fig = gate_heatmap(log.gate_weights, f"epoch {log.epoch}")
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80)
        plt.close(fig)
        buffer.seek(0)
        mlflow.log_image(Image.open(buffer), key="gate_weights", step=log.epoch)


def log_gate_weights(history: Sequence[EpochLog]) -> bool:
    """Log every epoch's table (``gate_weights.json``) and the last epoch's heatmap
    (``plots/gate_weights.png``) to the active run; False when the model has no gates."""
    tables = {str(log.epoch): log.gate_weights for log in history if log.gate_weights}
    if not tables:
        return False
    last = history[-1].gate_weights
    assert last is not None
    mlflow.log_dict(
        {
            "epochs": tables,
            "overlap": dict(zip(last, overlap(last).round(4).tolist(), strict=True)),
        },
        "gate_weights.json",
    )
    log_figure(gate_heatmap(last, f"epoch {history[-1].epoch}"), "plots/gate_weights.png")
    return True
