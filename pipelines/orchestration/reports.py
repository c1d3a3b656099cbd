"""What a flow run shows in the Prefect UI: its per-task test metrics, registry decision and
tuning result as markdown and table artifacts, with links to MLflow."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipelines.services.summaries import (
    cell,
    metrics_markdown,
    metrics_rows,
    registry_line,
)

if TYPE_CHECKING:
    from pipelines.config import Params
    from pipelines.files import ProjectPaths

# Keyed artifacts: the Artifacts page of the Prefect UI shows each key's latest version.
REPORT_KEY = "mtlflow-model-report"
METRICS_KEY = "mtlflow-test-metrics"
TUNING_KEY = "mtlflow-tuning-report"


@dataclass(frozen=True)
class RunLinks:
    """Where a flow run's results are: its Prefect flow run, MLflow run and split hash."""

    flow_run: str
    mlflow_run_id: str
    mlflow_run_url: str
    splits_md5: str
    params_file: str
    overrides: Mapping[str, Any] = field(default_factory=dict)


def _header(title: str, links: RunLinks) -> list[str]:
    shown = ", ".join(f"`{k}={v}`" for k, v in links.overrides.items()) or "none"
    return [
        f"# {title}",
        "",
        f"- flow run: `{links.flow_run}`; params `{links.params_file}`, overrides {shown}",
        f"- split: `data/splits` md5 `{links.splits_md5}` (dvc.lock)",
        f"- MLflow run: [{links.mlflow_run_id}]({links.mlflow_run_url})",
    ]


def model_report(
    links: RunLinks, metrics: Mapping[str, Any], decision: Mapping[str, Any], version_url: str
) -> str:
    """Markdown: the run's links, the registry decision and the per-task test metrics."""
    lines = _header("Model report", links)
    lines += ["", "## Registry", "", registry_line(decision, version_url), ""]
    lines += ["## Test metrics", "", *metrics_markdown(metrics)]
    return "\n".join(lines) + "\n"


def tune_report(links: RunLinks, best: Mapping[str, Any], tune_run_url: str | None) -> str:
    """Markdown: the study, its best trial and the values ``train`` will apply."""
    lines = _header("Tuning report", links)
    if best.get("study") is None:
        lines += ["", f"Tuning skipped: {best.get('skipped', 'disabled')}."]
        return "\n".join(lines) + "\n"
    where = f" ([MLflow tune run]({tune_run_url}))" if tune_run_url else ""
    lines += [
        "",
        f"Study `{best['study']}`{where}: best trial {best['trial']}, "
        f"{best['objective']} {best['value']:.4f}.",
        "",
        "| parameter | best value |",
        "|---|---|",
    ]
    lines += [f"| `{key}` | {cell(value)} |" for key, value in best.get("params", {}).items()]
    return "\n".join(lines) + "\n"


def publish(
    params: Params,
    paths: ProjectPaths,
    links: RunLinks,
    ui: str,
    tuned: Mapping[str, Any] | None,
    trained: bool,
) -> None:
    """Create the flow run's artifacts: the tuning report when it tuned, the model report and
    the metrics table when it trained (``reports/`` holds an earlier run's files otherwise)."""
    from mlflow import MlflowClient
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    from pipelines import tracking
    from pipelines.files import read_json
    from pipelines.orchestration.flow_tracking import descendants, model_version_url

    if tuned is not None:
        client = MlflowClient(tracking.configure(params))
        tune_runs = [
            run_id
            for run_id in descendants(client, links.mlflow_run_id)
            if client.get_run(run_id).data.tags.get("mtlflow.stage") == "tune"
        ]
        url = tracking.run_url(params, tune_runs[0], host=ui) if tune_runs else None
        create_markdown_artifact(
            tune_report(links, tuned, url),
            key=TUNING_KEY,
            description="Best trial of the Optuna study and the values train applies",
        )
    if not trained:
        return
    metrics = read_json(paths.metrics_file, "evaluate")
    decision = read_json(paths.registry_file, "register")
    version_url = model_version_url(decision["model_name"], decision["version"], ui)
    create_markdown_artifact(
        model_report(links, metrics, decision, version_url),
        key=REPORT_KEY,
        description="Per-task test metrics, registry decision, MLflow links",
    )
    create_table_artifact(
        metrics_rows(metrics),
        key=METRICS_KEY,
        description=f"Per-task test metrics of MLflow run {links.mlflow_run_id}",
    )
