"""The project's layout keeps its promises: every entry point comes from the one stage table,
and each `dvc.yaml` stage lists, as deps, every project module its command imports."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
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

# The project modules a stage's command loads: the CLI, then the stage function
IMPORTED = """
import json, sys
import pipelines.cli
from pipelines.stages import stage
stage(sys.argv[1]).run
mods = sorted(m.__file__ for n, m in list(sys.modules.items())
              if n.split('.')[0] in ('mtl_models', 'pipelines') and getattr(m, '__file__', None))
print(json.dumps(mods))
"""


def dvc_stages() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


@functools.cache
def imported_by_stage() -> dict[str, list[str]]:
    """Each stage's imports, from fresh interpreters started together."""
    procs = {
        s.name: subprocess.Popen(
            [sys.executable, "-c", IMPORTED, s.name], cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        for s in STAGES
    }
    found = {}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"importing stage {name} failed"
        found[name] = [str(Path(f).resolve().relative_to(REPO)) for f in json.loads(out)]
    return found


def imported_files(stage: str) -> list[str]:
    return imported_by_stage()[stage]


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
    assert not all(covered(f, ["pipelines/stages/split.py"]) for f in files)


def test_dvc_repro_runs_the_pipeline_stages_in_table_order():
    assert [n for n in dvc_stages() if n in PIPELINE] == list(PIPELINE)
    assert set(dvc_stages()) == set(PIPELINE)


def test_every_stage_is_a_cli_verb_and_an_mlproject_entry_point():
    verbs = {command.name for command in typer.main.get_command(app).commands.values()}
    entries = yaml.safe_load((REPO / "MLproject").read_text())["entry_points"]
    assert " -> ".join(PIPELINE) in (app.info.help or "")
    assert verbs == {s.name for s in STAGES} | {"run", "summary", "deploy"}
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


def test_the_tune_stage_reads_exactly_the_train_keys_a_trial_depends_on():
    """What a trial depends on has one home (NOT_IN_STUDY, which also names the study);
    dvc.yaml's tune stage must list the same train keys, or editing one leaves it stale."""
    listed = {p for p in dvc_stages()["tune"]["params"] if str(p).startswith("train.")}
    expected = {f"train.{k}" for k in TrainConfig.model_fields} - {
        f"train.{k}" for k in NOT_IN_STUDY["train"]
    }
    assert listed == expected
