"""The `mtlflow` console script: bad input fails fast with a clear message and exit status 2."""

import pytest

from tests.conftest import tiny_params_dict, write_params
from tests.helpers import run


def test_bad_override_names_the_key_and_runs_nothing(tmp_path):
    write_params(tmp_path, tiny_params_dict(tmp_path))
    result = run(["mtlflow", "run", "--set", "train.lrr=0.1"], tmp_path)
    assert result.returncode == 2
    assert "train.lrr: Extra inputs are not permitted" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_summary_before_any_run_says_what_to_run(tmp_path):
    write_params(tmp_path, tiny_params_dict(tmp_path))
    result = run(["mtlflow", "summary"], tmp_path)
    assert result.returncode == 2
    assert "run `mtlflow evaluate`" in result.stderr


def test_missing_params_file_is_reported(tmp_path):
    result = run(["mtlflow", "prepare", "--params", "elsewhere.yaml"], tmp_path)
    assert result.returncode == 2
    assert "elsewhere.yaml: params file not found" in result.stderr


@pytest.mark.slow
def test_run_with_a_tracking_override_points_the_summary_at_that_store(tmp_path):
    """`mtlflow run --set tracking.uri=...` logs to the given store, and the summary's UI
    command and run link name that store, not the one in params.yaml."""
    write_params(tmp_path, tiny_params_dict(tmp_path) | {"tune": {"enabled": False}})
    other = tmp_path / "elsewhere" / "other.db"
    result = run(["mtlflow", "run", "--set", f"tracking.uri=sqlite:///{other}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"mlflow ui --backend-store-uri sqlite:///{other}" in result.stdout
    assert "then browse http://" in result.stdout
    assert other.is_file()
    assert not (tmp_path / "mlflow.db").exists()  # params.yaml's store was never written
    # the test table once (evaluate's), and no artifact download bars in the output
    assert result.stdout.count("mean score") == 1
    assert "Downloading artifacts" not in result.stdout + result.stderr
