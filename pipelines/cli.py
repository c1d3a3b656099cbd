"""The ``mtlflow`` command line: one verb per stage, plus ``run`` and ``summary``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from pipelines.errors import MtlflowError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals hold image arrays; the trace is enough
    help=(
        "Multi-task learning pipeline: prepare -> split -> tune -> [baselines] -> train -> "
        "evaluate -> register."
    ),
)

ParamsOption = Annotated[
    Path, typer.Option("--params", "-p", help="Params file to read.", dir_okay=False)
]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set", "-s", help="Override a param, KEY=VALUE (repeatable), e.g. train.lr=3e-4."
    ),
]
STAGE_ORDER = ("prepare", "split", "tune", "baselines", "train", "evaluate", "register")


@app.callback()
def _startup() -> None:
    from pipelines import runtime

    runtime.quiet_environment()
    runtime.keep_freed_memory()


def _run_stages(names: tuple[str, ...], params_file: Path, overrides: list[str] | None) -> None:
    from pipelines import stages
    from pipelines.config import load_params
    from pipelines.files import ProjectPaths
    from pipelines.services.distributed import check_stage

    try:
        for name in names:
            check_stage(name)
        params = load_params(params_file, overrides or [])
        paths = ProjectPaths(Path.cwd())
        for name in names:
            stage: Callable[..., Any] = getattr(stages, name)
            stage(params, paths)
    except MtlflowError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


@app.command()
def prepare(params: ParamsOption = Path("params.yaml"), set_: SetOption = None) -> None:
    """Generate the built-in data.source (defect images by default) into data/raw/."""
    _run_stages(("prepare",), params, set_)


@app.command()
def split(params: ParamsOption = Path("params.yaml"), set_: SetOption = None) -> None:
    """Check the data, decode its inputs once and write stratified splits to data/splits/."""
    _run_stages(("split",), params, set_)


@app.command()
def augment(params: ParamsOption = Path("params.yaml"), set_: SetOption = None) -> None:
    """Show which augmentations every task's label survives; write the report and a preview."""
    _run_stages(("augment",), params, set_)


@app.command()
def tune(params: ParamsOption = Path("params.yaml"), set_: SetOption = None) -> None:
    """Search tune.search_space with Optuna (resumable); write reports/best_params.yaml."""
    _run_stages(("tune",), params, set_)


@app.command()
def baselines(params: ParamsOption = Path("params.yaml"), set_: SetOption = None) -> None:
    """Train one single-task model per task (same backbone, budget, split) for Δm; needs
    baselines.enabled (`--set baselines.enabled=true`)."""
    _run_stages(("baselines",), params, set_)


@app.command()
def train(params: ParamsOption = Path("params.yaml"), set_: SetOption = None) -> None:
    """Train (with reports/best_params.yaml over params); write models/ and an MLflow run.

    Data-parallel under torchrun: `torchrun --nproc_per_node N -m pipelines.cli train`.
    """
    _run_stages(("train",), params, set_)


@app.command()
def evaluate(params: ParamsOption = Path("params.yaml"), set_: SetOption = None) -> None:
    """Score the model on the test split; write reports/metrics.json and plots."""
    _run_stages(("evaluate",), params, set_)


@app.command()
def register(params: ParamsOption = Path("params.yaml"), set_: SetOption = None) -> None:
    """Register the model; move the alias only if its mean test score beats the champion's."""
    _run_stages(("register",), params, set_)


@app.command()
def run(params: ParamsOption = Path("params.yaml"), set_: SetOption = None) -> None:
    """Run every stage in order in this process (use `dvc repro` for cached, versioned runs)."""
    _run_stages(STAGE_ORDER, params, set_)
    summary(params)


@app.command()
def summary(params: ParamsOption = Path("params.yaml")) -> None:
    """Print the per-task test table, the registry decision and how to open the MLflow UI."""
    import mlflow

    from pipelines import tracking
    from pipelines.config import load_params
    from pipelines.files import ProjectPaths, read_json
    from pipelines.stages.evaluate import format_table

    try:
        cfg = load_params(params)
        paths = ProjectPaths(Path.cwd())
        metrics = read_json(paths.metrics_file, "evaluate")
        run_info = read_json(paths.run_info, "train")
    except MtlflowError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    print(format_table(metrics))
    if paths.registry_file.is_file():
        decision = read_json(paths.registry_file, "register")
        state = "promoted to" if decision["promoted"] else "registered; not promoted to"
        print(f"model {decision['model_name']} v{decision['version']} {state} @{decision['alias']}")
    uri = tracking.configure(cfg)
    print("\nOpen the run in the MLflow UI:")
    print(f"  mlflow ui --backend-store-uri {uri} --workers 1")
    with contextlib.suppress(mlflow.exceptions.MlflowException):  # run deleted: no link
        print(f"  then browse {tracking.run_url(cfg, run_info['run_id'])}")


@app.command()
def deploy(
    name: Annotated[
        list[str] | None,
        typer.Option(
            "--name",
            "-n",
            help="Deployment to apply, FLOW/NAME (repeatable); default: all in prefect.yaml.",
        ),
    ] = None,
) -> None:
    """Create the Prefect work pool and apply prefect.yaml's deployments (needs a server)."""
    from pipelines.orchestration.deployments import deploy_project

    try:
        deploy_project(Path.cwd(), name or [])
    except MtlflowError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


def main() -> None:
    app()


if __name__ == "__main__":
    main()
