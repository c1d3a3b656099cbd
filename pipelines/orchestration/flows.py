"""Prefect flows over the stage functions: ``mtl-pipeline``, ``tune`` and ``train``.

Each flow run:

1. validates its parameters (a params file and dotted overrides) before any work;
2. runs the data stages through ``dvc repro prepare`` and ``dvc repro split``, so its split is
   the one ``dvc repro`` makes from ``params.yaml``, hashed in ``dvc.lock`` (``dvc_data``);
3. opens one MLflow run tagged with the Prefect flow run and that hash, which ``train`` logs
   into and ``tune`` nests under (``flow_tracking``);
4. runs the model stages in this process as tasks, on the flow's params (overrides applied);
5. publishes markdown and table artifacts: per-task test metrics, the registry decision and
   links to MLflow (``flow_reports``).

``prefect.yaml`` deploys the three flows; ``mtlflow deploy`` applies it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote
from pydantic import StringConstraints

if TYPE_CHECKING:
    from prefect import Task
    from prefect.client.schemas.objects import TaskRun
    from prefect.states import State

    from pipelines.config import Params
    from pipelines.files import ProjectPaths
    from pipelines.orchestration.reports import RunLinks

# Flow parameters, validated by Prefect (pydantic) before a flow run starts.
ParamsFile = Annotated[str, StringConstraints(pattern=r"\.ya?ml$")]
OverrideKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][\w-]*(\.[\w*-]+)*$")]
Overrides = dict[OverrideKey, Any]
UiUrl = Annotated[str, StringConstraints(pattern=r"^https?://\S+$")]
DEFAULT_UI = "http://127.0.0.1:5000"  # where `mlflow ui` listens by default

SPLITS_OUT = "data/splits"


@dataclass(frozen=True)
class FlowContext:
    """What the tasks of one flow run work on (passed quoted: Prefect leaves it as it is)."""

    params: Params
    paths: ProjectPaths
    mlflow_run_id: str
    # keys the flow run overrides: they win over tuned values (reports/best_params.yaml)
    overridden: frozenset[str] = frozenset()


def override_strings(overrides: Mapping[str, Any]) -> list[str]:
    """``{"train.lr": 3e-4}`` -> ``["train.lr=0.0003"]``, the ``--set`` form of
    ``load_params``. Each value is written as YAML, which reads back as the same value."""
    import yaml

    items = []
    for key, value in overrides.items():
        text = yaml.safe_dump(value, default_flow_style=True, width=1 << 20).strip()
        items.append(f"{key}={text.removesuffix('...').strip()}")  # a scalar's end marker
    return items


def load_flow_params(root: Path, params_file: str, overrides: Mapping[str, Any]) -> Params:
    """The flow's params: the file with the overrides, validated, and agreeing with
    ``params.yaml`` on what the DVC data stages read."""
    from pipelines.config import load_params
    from pipelines.orchestration.dvc import check_data_params

    params = load_params(Path(params_file), override_strings(overrides))
    check_data_params(params, root)
    return params


def _is_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry unless the failure is a user-facing error (bad params or data, a stage's own
    check): those fail the same way every time."""
    from pipelines.errors import MtlflowError

    try:
        exc = state.result(raise_on_failure=False)
    except Exception:
        return False
    return isinstance(exc, Exception) and not isinstance(exc, MtlflowError)


# -------------------------------------------------------------------------------- tasks


@task(
    name="dvc repro",
    task_run_name="{stage} (dvc repro)",
    retries=2,
    retry_delay_seconds=10,
    retry_condition_fn=_is_transient,  # another DVC process holding the repository
    cache_policy=NO_CACHE,
)
def reproduce(stage: str, root: str) -> None:
    """``dvc repro STAGE``: DVC skips it when its deps and params are unchanged."""
    from pipelines.orchestration.dvc import dvc_repro

    dvc_repro(stage, Path(root), log=get_run_logger().info)


@task(name="tune", task_run_name="tune", cache_policy=NO_CACHE)
def tune_stage(ctx: FlowContext) -> dict[str, Any]:
    from pipelines import stages

    # the tune run nests under the flow's run
    return stages.tune(ctx.params, ctx.paths, project_run=ctx.mlflow_run_id)


@task(name="baselines", task_run_name="baselines", cache_policy=NO_CACHE)
def baselines_stage(ctx: FlowContext) -> dict[str, Any]:
    from pipelines import stages

    return stages.baselines(ctx.params, ctx.paths, ctx.overridden, ctx.mlflow_run_id)


@task(name="train", task_run_name="train", cache_policy=NO_CACHE)
def train_stage(ctx: FlowContext) -> dict[str, Any]:
    from pipelines import stages

    # train logs into the flow's run
    return stages.train(ctx.params, ctx.paths, ctx.overridden, ctx.mlflow_run_id)


@task(name="evaluate", task_run_name="evaluate", cache_policy=NO_CACHE)
def evaluate_stage(ctx: FlowContext) -> dict[str, Any]:
    from pipelines import stages

    return stages.evaluate(ctx.params, ctx.paths)


@task(
    name="register",
    task_run_name="register",
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=_is_transient,
    cache_policy=NO_CACHE,
)
def register_stage(ctx: FlowContext) -> dict[str, Any]:
    from mlflow import MlflowClient

    from pipelines import stages, tracking
    from pipelines.errors import MtlflowError
    from pipelines.orchestration.flow_tracking import versions_from_run

    name = ctx.params.registry.model_name
    client = MlflowClient(tracking.configure(ctx.params))
    earlier = versions_from_run(client, name, ctx.mlflow_run_id)
    if earlier:  # an earlier attempt registered it, then failed: a retry must not repeat it
        raise MtlflowError(
            f"register: {name} version {earlier[-1]} is already registered from MLflow run "
            f"{ctx.mlflow_run_id}; check its alias by hand rather than registering it twice"
        )
    return stages.register(ctx.params, ctx.paths)


@task(
    name="publish reports",
    task_run_name="publish reports",
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=_is_transient,
    cache_policy=NO_CACHE,
)
def publish_reports(
    ctx: FlowContext, links: RunLinks, ui: str, tuned: dict[str, Any] | None, trained: bool
) -> None:
    """Markdown and table artifacts on this flow run, read from the files the stages wrote."""
    from pipelines.orchestration.reports import publish

    publish(ctx.params, ctx.paths, links, ui, tuned=tuned, trained=trained)


# -------------------------------------------------------------------------------- flows


def _run(
    flow_name: str,
    steps: tuple[str, ...],
    params_file: str,
    overrides: Mapping[str, Any],
    ui: str,
) -> dict[str, Any]:
    """One flow run: validate, reproduce the data with DVC, run ``steps`` in the flow's MLflow
    run, publish the artifacts; returns a summary (MLflow run, split hash, model version)."""
    from prefect.runtime import flow_run

    from pipelines import runtime, tracking
    from pipelines.files import ProjectPaths
    from pipelines.orchestration.dvc import locked_md5
    from pipelines.orchestration.flow_tracking import flow_run_in_mlflow, flow_run_tags
    from pipelines.orchestration.project_copy import project_lock
    from pipelines.orchestration.reports import RunLinks
    from pipelines.stages import DATA_STAGES

    runtime.quiet_environment()
    runtime.keep_freed_memory()
    logger = get_run_logger()
    root = Path.cwd()
    params = load_flow_params(root, params_file, overrides)  # before any work
    shown = " ".join(override_strings(overrides)) or "no overrides"
    logger.info(f"{flow_name}: {root}, {params_file} with {shown}; stages {', '.join(steps)}")

    with project_lock(root, logger.info):  # runs sharing this copy's files wait
        for stage in DATA_STAGES:
            reproduce(stage, str(root))
        splits_md5 = locked_md5(root, "split", SPLITS_OUT)
        logger.info(f"split: {SPLITS_OUT} md5 {splits_md5} (dvc.lock)")

        tags = flow_run_tags(flow_name, params_file, overrides)
        tags |= {
            "dvc.splits.md5": splits_md5,
            "dvc.raw.md5": locked_md5(root, "prepare", "data/raw"),
        }
        summary: dict[str, Any] = {"splits_md5": splits_md5}
        tuned = None
        with flow_run_in_mlflow(params, root, f"{flow_name}/{flow_run.name}", tags) as run:
            run_id = run.info.run_id
            summary["mlflow_run_id"] = run_id
            ctx = FlowContext(params, ProjectPaths(root), run_id, frozenset(overrides))
            if "tune" in steps:
                tuned = tune_stage(quote(ctx))
                summary["best_trial"] = tuned.get("trial")
            if "baselines" in steps:
                baselines_stage(quote(ctx))
            if "train" in steps:
                train_stage(quote(ctx))
                metrics = evaluate_stage(quote(ctx))
                decision = register_stage(quote(ctx))
                summary |= {
                    "mean_test_score": metrics["summary"]["mean_score"],
                    "model_version": decision["version"],
                    "promoted": decision["promoted"],
                }
        links = RunLinks(
            flow_run=str(flow_run.name),
            mlflow_run_id=run_id,
            mlflow_run_url=tracking.run_url(params, run_id, host=ui),
            splits_md5=splits_md5,
            params_file=params_file,
            overrides=dict(overrides),
        )
        publish_reports(quote(ctx), quote(links), ui, quote(tuned), "train" in steps)
        logger.info(f"{flow_name}: done; MLflow run {links.mlflow_run_url}")
        return summary


@flow(name="mtl-pipeline", log_prints=True)
def mtl_pipeline(
    params_file: ParamsFile = "params.yaml",
    overrides: Overrides | None = None,
    mlflow_ui: UiUrl = DEFAULT_UI,
) -> dict[str, Any]:
    """The whole pipeline: prepare and split through `dvc repro`, then tune, baselines,
    train, evaluate and register.

    Args:
        params_file: params file, relative to the project root.
        overrides: dotted keys and values set over the params file, e.g.
            {"train.lr": 0.0003}. The data, split and tasks keys the DVC data stages read
            must be changed in params.yaml instead.
        mlflow_ui: where the MLflow UI is, for the links in the artifacts.
    """
    from pipelines.stages import DATA_STAGES, PIPELINE

    return _run(
        "mtl-pipeline",
        tuple(name for name in PIPELINE if name not in DATA_STAGES),
        params_file,
        overrides or {},
        mlflow_ui,
    )


@flow(name="tune", log_prints=True)
def tune(
    params_file: ParamsFile = "params.yaml",
    overrides: Overrides | None = None,
    mlflow_ui: UiUrl = DEFAULT_UI,
) -> dict[str, Any]:
    """The Optuna search alone, on the split `dvc repro` makes; writes
    reports/best_params.yaml, which later train runs apply.

    Args:
        params_file: params file, relative to the project root.
        overrides: dotted keys and values set over the params file, e.g.
            {"tune.n_trials": 20}.
        mlflow_ui: where the MLflow UI is, for the links in the artifacts.
    """
    return _run("tune", ("tune",), params_file, overrides or {}, mlflow_ui)


@flow(name="train", log_prints=True)
def train(
    params_file: ParamsFile = "params.yaml",
    overrides: Overrides | None = None,
    mlflow_ui: UiUrl = DEFAULT_UI,
) -> dict[str, Any]:
    """Train (with reports/best_params.yaml applied), evaluate and register, on the split
    `dvc repro` makes; no tuning.

    Args:
        params_file: params file, relative to the project root.
        overrides: dotted keys and values set over the params file, e.g.
            {"train.epochs": 50}.
        mlflow_ui: where the MLflow UI is, for the links in the artifacts.
    """
    return _run("train", ("train",), params_file, overrides or {}, mlflow_ui)
