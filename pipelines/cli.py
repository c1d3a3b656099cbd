"""The ``mtlflow`` command line: one verb per stage, plus ``run`` and ``summary``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from pipelines.errors import MtlflowError
from pipelines.redaction import redact
from pipelines.stages import PIPELINE, STAGES, stage

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals hold image arrays; the trace is enough
    help=(
        "Multi-task learning pipeline: " + " -> ".join(PIPELINE) + " (baselines only with "
        "baselines.enabled)."
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


@app.callback()
def _startup() -> None:
    from pipelines import runtime

    runtime.quiet_environment()
    runtime.keep_freed_memory()


def _fail(exc: MtlflowError) -> typer.Exit:
    typer.secho(f"error: {redact(str(exc))}", fg=typer.colors.RED, err=True)
    return typer.Exit(2)


def _run_stages(names: tuple[str, ...], params_file: Path, overrides: list[str] | None) -> None:
    from pipelines.config import load_params, override_keys
    from pipelines.files import ProjectPaths
    from pipelines.services.distributed import check_stage

    try:
        for name in names:
            check_stage(name)
        params = load_params(params_file, overrides or [])
        overridden = frozenset(override_keys(overrides or []))
        paths = ProjectPaths(Path.cwd())
        for name in names:
            stage(name).call(params, paths, overridden)
    except MtlflowError as exc:
        raise _fail(exc) from None


def _stage_command(name: str) -> Callable[..., None]:
    def command(params: ParamsOption = Path("params.yaml"), set_: SetOption = None) -> None:
        _run_stages((name,), params, set_)

    return command


for _stage in STAGES:  # one verb per stage, from the table
    app.command(name=_stage.name, help=_stage.help)(_stage_command(_stage.name))


@app.command()
def run(params: ParamsOption = Path("params.yaml"), set_: SetOption = None) -> None:
    """Run every stage in order in this process (use `dvc repro` for cached, versioned runs)."""
    _run_stages(PIPELINE, params, set_)
    _summary(params, set_, table=False)  # evaluate has just printed the test table


@app.command()
def summary(params: ParamsOption = Path("params.yaml"), set_: SetOption = None) -> None:
    """Print the per-task test table, the registry decision and how to open the MLflow UI."""
    _summary(params, set_, table=True)


def _summary(params: Path, set_: list[str] | None, table: bool) -> None:
    import mlflow

    from pipelines import tracking
    from pipelines.config import load_params
    from pipelines.files import ProjectPaths, read_json
    from pipelines.services.scoring import format_table

    try:
        cfg = load_params(params, set_ or [])
        paths = ProjectPaths(Path.cwd())
        metrics = read_json(paths.metrics_file, "evaluate")
        run_info = read_json(paths.run_info, "train")
    except MtlflowError as exc:
        raise _fail(exc) from None
    if table:
        print(format_table(metrics))
    if paths.registry_file.is_file():
        decision = read_json(paths.registry_file, "register")
        state = "promoted to" if decision["promoted"] else "registered; not promoted to"
        print(f"model {decision['model_name']} v{decision['version']} {state} @{decision['alias']}")
    uri = tracking.configure(cfg)
    print("\nOpen the run in the MLflow UI:")
    print(f"  mlflow ui --backend-store-uri {redact(uri)} --workers 1")
    with contextlib.suppress(mlflow.exceptions.MlflowException):  # run deleted: no link
        print(f"  then browse {tracking.run_url(cfg, run_info['run_id'])}")


@app.command("export-backbone")
def export_backbone(
    out: Annotated[
        Path, typer.Option("--out", help="the weights file to write (.safetensors)")
    ] = Path("models/backbone.safetensors"),
    model: Annotated[Path, typer.Option("--model", help="the folder train wrote")] = Path("models"),
) -> None:
    """Write the trained shared trunk as a weights file that another project's
    model.backbone.weights starts from (README "Pretrained backbones")."""
    from mtl_models.nn.checkpoint import (
        SPEC_FILE,
        WEIGHTS_FILE,
        CheckpointError,
        load_checkpoint,
    )
    from mtl_models.nn.weights import WeightsError, export_backbone, sha256_of

    if out.suffix != ".safetensors":
        raise _fail(MtlflowError(f"--out {out}: expected a .safetensors file"))
    if not (model / WEIGHTS_FILE).is_file() or not (model / SPEC_FILE).is_file():
        raise _fail(
            MtlflowError(f"{model}: no {WEIGHTS_FILE} and {SPEC_FILE}; run `mtlflow train` first")
        )
    try:
        trained, spec = load_checkpoint(model / WEIGHTS_FILE, model / SPEC_FILE)
        count = export_backbone(trained, spec, out)
    except CheckpointError as exc:
        raise _fail(MtlflowError(f"{exc}; rerun `mtlflow train`")) from None
    except WeightsError as exc:
        raise _fail(MtlflowError(str(exc))) from None
    print(f"export-backbone: {count} tensors of {spec.backbone}'s trunk -> {out}")
    print(f"  model.backbone: {{name: {spec.backbone}, weights: {out}, sha256: {sha256_of(out)}}}")


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
        raise _fail(exc) from None


@app.command()
def doctor(params: ParamsOption = Path("params.yaml"), set_: SetOption = None) -> None:
    """Check that the services this project uses answer (tracking store or server, study
    storage, Prefect API, DVC remote, device) before a long job; exit 1 if one does not."""
    from pipelines import tracking
    from pipelines.config import load_params
    from pipelines.services.doctor import diagnose

    try:
        cfg = load_params(params, set_ or [])
    except MtlflowError as exc:
        raise _fail(exc) from None
    checks = diagnose(cfg, Path.cwd(), tracking.tracking_uri(cfg))
    for check in checks:
        print(check.line())
    failed = [c.name for c in checks if c.status == "FAIL"]
    if failed:
        typer.secho(f"doctor: not reachable: {', '.join(failed)}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    print("doctor: everything this project uses answers")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
