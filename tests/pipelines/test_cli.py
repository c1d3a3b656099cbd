"""The `mtlflow` console script: bad input fails fast with a clear message and exit status 2."""

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
