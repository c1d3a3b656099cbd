"""Task affinity as the pipeline reports it: ``reports/affinity.json``, its heatmap and, in
the active MLflow run, a heatmap per epoch and the affinity-over-epochs plot."""

from __future__ import annotations

import numpy as np

from mtl_models.train.affinity import mean_affinity, suggest_groups
from mtl_models.train.trainer import FitResult
from pipelines.config import Params
from pipelines.files import ProjectPaths, write_json
from pipelines.services import plots
from pipelines.services.fitting import affinity_note


def write_affinity_report(
    params: Params, names: list[str], result: FitResult, paths: ProjectPaths
) -> dict[str, object]:
    """``reports/affinity.json`` (always, so DVC finds its output), its heatmap and, per
    epoch, a heatmap and the affinity-over-epochs plot in the active MLflow run."""
    cfg = params.train.affinity
    note = affinity_note(params)
    if note is not None:
        report: dict[str, object] = {"enabled": False, "note": note}
        write_json(paths.affinity_file, report)
        if cfg.enabled:
            print(f"train: no task affinity measured ({note})")
        return report
    epochs = [log.epoch for log in result.history]
    per_epoch = np.array([log.affinity for log in result.history], dtype=float)
    matrix = mean_affinity(per_epoch)
    grouping = suggest_groups(matrix, names, cfg.max_groups)

    def table(m: np.ndarray) -> dict[str, dict[str, float | None]]:
        def cell(value: float) -> float | None:
            return None if np.isnan(value) else round(float(value), 6)

        return {a: {b: cell(m[i, j]) for j, b in enumerate(names)} for i, a in enumerate(names)}

    report = {
        "enabled": True,
        "every": cfg.every,
        "definition": "Z[i][j] = 1 - L_j(after a step on task i) / L_j(before), mean over epochs",
        "matrix": table(matrix),
        "per_epoch": {str(e): table(m) for e, m in zip(epochs, per_epoch, strict=True)},
        "grouping": {
            "max_groups": cfg.max_groups,
            "groups": grouping.groups,
            "score": round(grouping.score, 6),
            "exhaustive": grouping.exhaustive,
        },
    }
    write_json(paths.affinity_file, report)
    plots.save(
        plots.affinity_heatmap(matrix, names, f"lookahead affinity, mean of {len(epochs)} epochs"),
        paths.plots_dir / "affinity.png",
    )
    for epoch, m in zip(epochs, per_epoch, strict=True):
        title = f"lookahead affinity, epoch {epoch}"
        artifact = f"plots/affinity/epoch_{epoch:03d}.png"
        plots.log_figure(plots.affinity_heatmap(m, names, title), artifact)
    plots.log_figure(
        plots.affinity_over_epochs(per_epoch, epochs, names), "plots/affinity_over_epochs.png"
    )
    shown = " | ".join(", ".join(g) for g in grouping.groups)
    print(f"train: task groups by affinity (at most {cfg.max_groups}): {shown}")
    return report
