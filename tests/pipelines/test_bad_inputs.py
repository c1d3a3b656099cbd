"""Bad input gets a one-line error naming the key, before any work (issue 18, item 7): an
override whose value is broken YAML, a device the machine does not have."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from pipelines import stages, tracking
from pipelines.config import load_params
from pipelines.config.overrides import apply_overrides
from pipelines.data.dataset import read_table
from pipelines.errors import ConfigError, DataError, MtlflowError
from pipelines.files import read_json
from pipelines.services.distributed import check_device
from tests.helpers import run


@pytest.mark.parametrize(
    ("override", "column"), [("train.lr=[1,", 4), ("train.lr={a: ", 5), ("a.b='x", 3)]
)
def test_an_override_that_is_not_yaml_names_itself_and_where(override: str, column: int) -> None:
    with pytest.raises(ConfigError) as err:
        apply_overrides({}, [override])
    message = str(err.value)
    assert message.startswith(f"override {override!r}: the value is not valid YAML")
    assert f"column {column}" in message and "\n" not in message


def test_a_valid_override_still_parses_as_yaml() -> None:
    raw = apply_overrides({}, ["train.lr=0.0003", "tune.search_space={}", "a.b=[1, 2]"])
    assert raw == {"train": {"lr": 3e-4}, "tune": {"search_space": {}}, "a": {"b": [1, 2]}}


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("cuda", r"train.device 'cuda': this machine has no such device \(0 CUDA devices\)"),
        ("cuda:3", r"train.device 'cuda:3': this machine has no such device"),
        ("gpu", r"train.device 'gpu': not a device"),
    ],
)
def test_a_device_the_machine_lacks_is_refused_naming_the_key(project, device, message) -> None:
    _, paths = project
    params = load_params(paths.root / "params.yaml", [f"train.device={device}"])
    with pytest.raises(ConfigError, match=message):
        check_device(params)
    check_device(load_params(paths.root / "params.yaml", ["train.device=cpu"]))


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_train_on_a_missing_gpu_fails_before_any_mlflow_run(project) -> None:
    params, paths = project
    stages.prepare(params, paths)
    stages.split(params, paths)
    result = run(["mtlflow", "train", "--set", "train.device=cuda"], paths.root)
    assert result.returncode == 2
    assert result.stderr.startswith("error: train.device 'cuda': this machine has no such")
    assert "Traceback" not in result.stdout + result.stderr
    mlflow.set_tracking_uri(params.tracking.uri)
    assert mlflow.search_runs(search_all_experiments=True, output_format="list") == []


def test_an_empty_or_binary_table_is_a_one_line_data_error(tmp_path) -> None:
    empty, binary = tmp_path / "empty.csv", tmp_path / "binary.csv"
    empty.write_bytes(b"")
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError, match=r"empty.csv: is empty \(data.table\); expected a header"):
        read_table(empty, header=True, generated=False)
    with pytest.raises(DataError, match=r"binary.csv: cannot be read as a table \(data.table\)"):
        read_table(binary, header=True, generated=False)


def test_a_tracking_folder_that_cannot_be_created_names_the_key(project) -> None:
    _, paths = project
    params = load_params(
        paths.root / "params.yaml", ["tracking.uri=sqlite:////proc/no-such/mlflow.db"]
    )
    with pytest.raises(
        ConfigError,
        match=r"tracking.uri 'sqlite:////proc/no-such/mlflow.db': "
        r"cannot create its folder /proc/no-such",
    ):
        tracking.configure(params)


def test_a_truncated_report_is_named_with_the_stage_that_rewrites_it(tmp_path) -> None:
    report = tmp_path / "metrics.json"
    report.write_text('{"tasks": {')
    with pytest.raises(MtlflowError) as err:
        read_json(report, "evaluate")
    assert str(err.value).startswith(f"{report}: not valid JSON (")
    assert str(err.value).endswith("truncated or edited? rerun `mtlflow evaluate`")


def test_a_section_given_twice_in_params_is_refused_naming_both_lines(tmp_path) -> None:
    """YAML keeps the last of two equal keys: the first `model:` would vanish silently."""
    path = tmp_path / "params.yaml"
    path.write_text("model:\n  head_hidden: 32\ntrain:\n  epochs: 3\nmodel:\n  dropout: 0.2\n")
    with pytest.raises(ConfigError) as err:
        load_params(path)
    assert str(err.value) == (
        f"{path}: line 5: key 'model' is given twice (first on line 1); YAML would keep only "
        "the last, so merge them"
    )
    path.write_text("train:\n  weighting: {method: static, weights: {a: 1, a: 2}}\n")
    with pytest.raises(ConfigError, match="line 2: key 'a' is given twice"):
        load_params(path)


def test_a_request_with_too_many_rows_is_refused_before_decoding(monkeypatch) -> None:
    from mtl_models.inputs import FeatureInput, InvalidRequest
    from pipelines.serving.requests import request_inputs

    spec = FeatureInput("x", ("a",), (), (0.0,), (1.0,), ())
    frame = pd.DataFrame({"a": np.arange(5.0)})
    assert request_inputs(frame, [spec])["x"].shape == (5, 1)
    monkeypatch.setenv("MTLFLOW_SERVE_MAX_ROWS", "4")
    with pytest.raises(InvalidRequest) as err:
        request_inputs(frame, [spec])
    assert str(err.value) == (
        "5 rows in one request; at most 4 (MTLFLOW_SERVE_MAX_ROWS): send them in several requests"
    )


def test_a_binary_params_file_names_the_first_byte_that_is_not_utf8(tmp_path) -> None:
    path = tmp_path / "params.yaml"
    path.write_bytes(b"train:\n  lr: 0.1\n" + bytes(range(128, 256)))
    with pytest.raises(ConfigError) as err:
        load_params(path)
    assert str(err.value) == f"{path}: not UTF-8 text (byte 0x80 at offset 17)"


def test_broken_yaml_is_one_line_naming_the_file_line_and_column(tmp_path) -> None:
    """PyYAML's own message spans lines and calls the file ``<unicode string>``."""
    from pipelines.files import ProjectPaths
    from pipelines.services.best_params import read_best_params

    path = tmp_path / "params.yaml"
    path.write_text("train:\n  lr: 0.1\nx: [1, 2\n")
    with pytest.raises(ConfigError) as err:
        load_params(path)
    assert str(err.value) == (
        f"{path}: not valid YAML at line 4, column 1: expected ',' or ']', but got '<stream end>'"
    )
    paths = ProjectPaths(tmp_path)
    paths.reports_dir.mkdir()
    paths.best_params.write_text("{{{: [")
    with pytest.raises(ConfigError) as err:
        read_best_params(paths)
    assert str(err.value) == (
        f"{paths.best_params}: not valid YAML at line 1, column 4: expected the node content, "
        "but found ':'; rerun `mtlflow tune`"
    )


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.epochs=true", "train.epochs"),
        ("train.lr=false", "train.lr"),
        ("model.shared_depth=true", "model.shared_depth"),  # int | str | None
        ("train.weighting={method: static, weights: {pits_left: true}}", "weights.pits_left"),
        ("model.architecture={name: mmoe, experts: true}", "model.architecture.experts"),
    ],
)
def test_a_boolean_for_a_number_is_refused_naming_the_key(project, override, key) -> None:
    """Pydantic's lax mode would read ``true`` as 1 (one epoch) without a word."""
    _, paths = project
    with pytest.raises(ConfigError) as err:
        load_params(paths.root / "params.yaml", [override])
    assert f"{key}: expected a number, not a boolean" in str(err.value)
    assert load_params(paths.root / "params.yaml", ["tune.enabled=true"]).tune.enabled


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("register.alias=bad/../alias", "register.alias: Value error, an alias may only hold"),
        ("register.alias=latest", "register.alias: Value error, 'latest' is reserved"),
        ("register.alias=V2", "register.alias: Value error, 'V2' is reserved"),
        ("register.model_name=''", "register.model_name: Value error, a registered model needs"),
        ("register.model_name=a/b", "register.model_name: Value error, a registered model name "),
        ("register.model_name=../up", "register.model_name: Value error, a registered model name"),
        ("tracking.experiment=''", "tracking.experiment: String should have at least 1"),
    ],
)
def test_names_mlflow_refuses_fail_when_params_load(project, override, message) -> None:
    """Not as an MlflowException traceback at the end of `register` or `train`."""
    _, paths = project
    with pytest.raises(ConfigError) as err:
        load_params(paths.root / "params.yaml", [override])
    assert message in str(err.value)
    fine = ["register.alias=champion-2_b", "register.model_name=my model", "tracking.experiment=e"]
    load_params(paths.root / "params.yaml", fine)


def test_a_weighting_its_own_method_refuses_fails_when_params_load(project) -> None:
    _, paths = project
    bad = "train.weighting={method: static, weights: {pits_left: -1}}"
    with pytest.raises(ConfigError) as err:
        load_params(paths.root / "params.yaml", [bad])
    assert str(err.value).endswith(
        "train.weighting: static weights must be >= 0, got negative for ['pits_left'] "
        "(got 'static')"
    )
    load_params(paths.root / "params.yaml", [bad.replace("-1", "2")])


@pytest.mark.parametrize(
    ("architecture", "message"),
    [
        ("{name: mmoe, experts: 0}", "model.architecture.experts must be >= 1, got 0 (mmoe)"),
        ("{name: dselect_k, experts: 2, k: 3}", "model.architecture.k must be in 1..experts (2)"),
    ],
)
def test_an_architecture_argument_it_refuses_fails_the_preflight(project, architecture, message):
    """Before any MLflow run (`check_backbone` runs before `train` opens one), not as a
    ValueError from the model's constructor."""
    from mtl_models.inputs import ImageInput
    from pipelines.services.fitting import check_backbone

    _, paths = project
    sets = [f"model.architecture={architecture}", "tune.search_space={}"]
    params = load_params(paths.root / "params.yaml", sets)
    with pytest.raises(ConfigError) as err:
        check_backbone(params, [ImageInput("image", 32, 1)])
    assert str(err.value).startswith(message)
    good = ["model.architecture={name: mmoe, experts: 2}", sets[1]]
    check_backbone(load_params(paths.root / "params.yaml", good), [ImageInput("image", 32, 1)])


NOT_A_DB = b"SQLite format 3\x00" + bytes(range(256)) * 32  # a header, then garbage


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("foo://bar", "tracking.uri 'foo://bar': MLflow has no tracking store for the scheme"),
        (
            "http://bob:s3cret@127.0.0.1:9",  # nothing listens on port 9 (discard)
            "tracking.uri: http://bob:***@127.0.0.1:9: the tracking server does not answer (",
        ),
    ],
)
def test_a_tracking_store_that_cannot_answer_is_one_line_naming_the_key(project, uri, message):
    _, paths = project
    params = load_params(paths.root / "params.yaml", [f"tracking.uri={uri}"])
    with pytest.raises(MtlflowError) as err:
        tracking.configure(params)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
    assert "s3cret" not in str(err.value)


def test_a_corrupt_sqlite_store_is_named_with_where_its_uri_came_from(project, monkeypatch):
    _, paths = project
    bad = paths.root / "broken.db"
    bad.write_bytes(NOT_A_DB)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{bad}")
    with pytest.raises(MtlflowError, match=r"^MLFLOW_TRACKING_URI: sqlite:///.*broken.db: not a"):
        tracking.configure(load_params(paths.root / "params.yaml"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    params = load_params(paths.root / "params.yaml", [f"tracking.uri=sqlite:///{bad}"])
    with pytest.raises(MtlflowError) as err:
        tracking.configure(params)
    assert str(err.value) == (
        f"tracking.uri: sqlite:///{bad}: not a readable SQLite database (file is not a "
        "database); restore it from a backup, or move it aside to start a new store"
    )
    assert bad.read_bytes() == NOT_A_DB


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        (
            "metrics.json",
            "[]",
            "expected an object at the top level (holding summary.mean_score)"
            ", got a list; rerun `mtlflow evaluate`",
        ),
        (
            "metrics.json",
            '{"tasks": {}}',
            "no summary.mean_score (a number); rerun `mtlflow evaluate`",
        ),
        ("run.json", '{"run_id": "0a1b"}', "no model_uri (a string); rerun `mtlflow train`"),
    ],
)
def test_register_checks_the_shape_of_what_it_reads(project, file, content, message) -> None:
    """Not a KeyError or TypeError traceback: the file, the key and the stage to rerun."""
    params, paths = project
    paths.models_dir.mkdir()
    paths.reports_dir.mkdir()
    paths.run_info.write_text('{"run_id": "0a1b", "model_uri": "models:/m-0"}')
    paths.metrics_file.write_text('{"summary": {"mean_score": 0.5}}')
    target = paths.run_info if file == "run.json" else paths.metrics_file
    target.write_text(content)
    with pytest.raises(MtlflowError) as err:
        stages.register(params, paths)
    assert str(err.value) == f"{target}: {message}"


def test_register_on_an_emptied_store_says_the_model_is_not_there(project) -> None:
    """A zero-byte mlflow.db (replaced or emptied since training): not MLflow's "Logged
    model ... not found" traceback from inside register_model."""
    params, paths = project
    for folder in (paths.models_dir, paths.reports_dir):
        folder.mkdir()
    model_uri = "models:/m-3d784166b08a4be28fc8c5bbd6c0d731"
    paths.run_info.write_text(json.dumps({"run_id": "0a1b", "model_uri": model_uri}))
    paths.metrics_file.write_text('{"summary": {"mean_score": 0.5}}')
    (paths.root / "mlflow.db").write_bytes(b"")
    with pytest.raises(MtlflowError) as err:
        stages.register(params, paths)
    assert str(err.value) == (
        f"{params.tracking.uri}: the tracking store has no model {model_uri} (the model_uri of "
        f"{paths.run_info}): the store was replaced or emptied since training; run "
        "`mtlflow train` (or `dvc repro`)"
    )
    assert not paths.registry_file.exists()


def test_evaluate_names_a_truncated_model_and_the_stage_that_rewrites_it(project) -> None:
    from mtl_models.inputs import ImageInput
    from mtl_models.nn.checkpoint import WEIGHTS_FILE, save_checkpoint
    from mtl_models.nn.model import build_model
    from pipelines.services.fitting import model_spec

    params, paths = project
    spec = model_spec(params, params.task_specs(), [ImageInput("image", 32, 1)])
    save_checkpoint(build_model(spec), spec, paths.models_dir)
    paths.run_info.write_text('{"run_id": "0a1b", "model_uri": "models:/m-0"}')
    weights = paths.models_dir / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-200])
    with pytest.raises(MtlflowError) as err:
        stages.evaluate(params, paths)
    message = str(err.value)
    assert message.startswith(f"{weights}: not readable weights (RuntimeError: ")
    assert message.endswith("; rerun `mtlflow train`") and "\n" not in message


def test_a_truncated_split_array_names_the_file_and_the_stage(project) -> None:
    """numpy's own message ("mmap length is greater than file size") names no file."""
    from pipelines.data.splits import load_split

    params, paths = project
    tasks = params.task_specs()
    folder = paths.split_dir("test")
    folder.mkdir(parents=True)
    np.save(folder / "tasks.npy", np.array([t.name for t in tasks]))
    np.save(folder / "labels.npy", np.zeros((50, len(tasks))))
    assert load_split(paths, "test", tasks)[1].shape == (50, len(tasks))
    labels = folder / "labels.npy"
    labels.write_bytes(labels.read_bytes()[:-200])
    with pytest.raises(DataError) as err:
        load_split(paths, "test", tasks)
    assert str(err.value) == (
        f"{labels}: unreadable (mmap length is greater than file size); truncated or edited? "
        "rerun `mtlflow split` (or `dvc repro`)"
    )


def test_a_stage_refuses_a_split_made_with_other_params(project) -> None:
    """`mtlflow train --set data.synthetic.image_size=48` after splitting at 32 px trained on
    the old split without a word."""
    from pipelines.data.splits import MADE_WITH_FILE, check_split_current
    from pipelines.stages import stage

    params, paths = project
    stages.prepare(params, paths)
    stages.split(params, paths)
    made_with = json.loads((paths.splits_dir / MADE_WITH_FILE).read_text())
    assert made_with["data"]["synthetic"]["image_size"] == 32
    assert "focal_gamma" not in json.dumps(made_with["tasks"])  # training's, not split's
    sets = ["data.synthetic.image_size=48", "split.seed=7", "tasks.pits_left.focal_gamma=2"]
    changed = load_params(paths.root / "params.yaml", sets)
    for name in ("train", "tune", "baselines", "augment"):
        with pytest.raises(DataError) as err:
            stage(name).call(changed, paths)
        assert str(err.value) == (
            f"{paths.splits_dir} was made with data.synthetic.image_size=32 (params: 48), "
            "split.seed=42 (params: 7); run `mtlflow split` (or `dvc repro`)"
        )
    check_split_current(load_params(paths.root / "params.yaml", sets[2:]), paths)
