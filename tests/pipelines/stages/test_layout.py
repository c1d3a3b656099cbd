"""The project's layout keeps its promises: every entry point comes from the one stage table,
and each `dvc.yaml` stage lists, as deps, every project module its command imports."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest
import typer
import yaml

from pipelines.cli import app
from pipelines.config import TrainConfig
from pipelines.services.best_params import NOT_IN_STUDY
from pipelines.stages import PIPELINE, STAGES
from tests.conftest import REPO

PACKAGES = ("mtl_models", "pipelines")


def dvc_stages() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def module_file(name: str) -> Path | None:
    """The project file of a dotted module name (None for anything outside the project)."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = REPO.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def top_level_imports(file: Path, package: str) -> set[str]:
    """Modules a file imports when it is loaded: module-level imports, not those inside
    functions (run later, if ever) or under ``if TYPE_CHECKING``."""
    found: set[str] = set()
    for node in ast.parse(file.read_text()).body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # submodules
    return found


@functools.cache
def imported_files(stage: str) -> list[str]:
    """The project modules ``mtlflow <stage>`` loads: the CLI, then the stage's module (which
    the stage table imports by name), and everything they import, with parent packages."""
    todo = ["pipelines.cli", f"pipelines.stages._{stage}"]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        parents = [".".join(name.split(".")[:k]) for k in range(1, name.count(".") + 1)]
        for module in [*parents, name]:
            file = module_file(module)
            if module in seen or file is None:
                continue
            seen.add(module)
            package = module if file.name == "__init__.py" else module.rpartition(".")[0]
            todo.extend(top_level_imports(file, package))
    return sorted(str(module_file(m).relative_to(REPO)) for m in seen)  # type: ignore[union-attr]


def covered(file: str, deps: list[str]) -> bool:
    return any(file == d or file.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize("name", [s.name for s in STAGES if s.name in dvc_stages()])
def test_each_dvc_stage_depends_on_every_project_module_its_command_imports(name):
    deps = [str(d) for d in dvc_stages()[name].get("deps", [])]
    missing = [f for f in imported_files(name) if not covered(f, deps)]
    assert not missing, f"dvc.yaml stage '{name}' imports but does not depend on {missing}"


def test_a_module_missing_from_the_deps_is_found():
    """The check above can fail: a stage whose deps list only its own module misses the rest."""
    files = imported_files("split")
    assert "pipelines/data/splits.py" in files
    assert not all(covered(f, ["pipelines/stages/_split.py"]) for f in files)


def test_dvc_repro_runs_the_pipeline_stages_in_table_order():
    assert [n for n in dvc_stages() if n in PIPELINE] == list(PIPELINE)
    assert set(dvc_stages()) == set(PIPELINE)


def test_every_stage_is_a_cli_verb_and_an_mlproject_entry_point():
    verbs = {command.name for command in typer.main.get_command(app).commands.values()}
    entries = yaml.safe_load((REPO / "MLproject").read_text())["entry_points"]
    assert " -> ".join(PIPELINE) in (app.info.help or "")
    assert verbs == {s.name for s in STAGES} | {
        "run",
        "summary",
        "deploy",
        "export-backbone",
        "doctor",
    }
    for s in STAGES:
        if not s.in_pipeline:
            continue
        command = entries[s.name]["command"]
        expected = f"mtlflow {s.name} --params {{params_file}}"
        assert command.startswith(expected), command
        assert all(f"--set {item}" in command for item in s.mlproject_sets), command
    assert set(entries) == {"main", *PIPELINE}
    assert entries["main"]["command"].startswith("mtlflow run ")


def test_no_module_is_over_about_300_lines():
    sizes = {
        str(f.relative_to(REPO)): len(f.read_text().splitlines())
        for package in PACKAGES
        for f in (REPO / package).rglob("*.py")
    }
    assert {f: n for f, n in sizes.items() if n > 330} == {}


def test_every_param_a_dvc_stage_lists_is_in_params_yaml():
    """DVC refuses to run a stage whose listed param the params file lacks."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for name, stage in dvc_stages().items():
        for key in stage.get("params", []):
            node = params
            for part in str(key).split("."):
                assert isinstance(node, dict) and part in node, f"{name}: {key}"
                node = node[part]


def test_the_tune_stage_reads_exactly_the_train_keys_a_trial_depends_on():
    """What a trial depends on has one home (NOT_IN_STUDY, which also names the study);
    dvc.yaml's tune stage must list the same train keys, or editing one leaves it stale."""
    listed = {p for p in dvc_stages()["tune"]["params"] if str(p).startswith("train.")}
    expected = {f"train.{k}" for k in TrainConfig.model_fields} - {
        f"train.{k}" for k in NOT_IN_STUDY["train"]
    }
    assert listed == expected
