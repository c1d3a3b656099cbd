"""The bad inputs `benchmarks/hostile_inputs.py` tries, and the two projects they start from.

A case names its project (a fresh copy of ``defects``: the tiny synthetic-defects project,
trained 1 epoch, evaluated and registered; or ``files``: the user's own PNGs and table in
``mine/``, split and trained), what it breaks there (``setup``), the ``mtlflow`` command, and
the substrings a clear error must hold (``a|b``: either one).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from tests.conftest import write_params
from tests.helpers import copy_project
from tests.mtl_models.test_hostile_images import png, png_header_only
from tests.pipelines.data.test_your_data import FEATURES, IMAGE, TASKS, image_table, params_dict

Setup = Callable[[Path], Any]  # may return {"cwd": Path, "stop": callable}


@dataclass
class Case:
    name: str
    category: str  # params | tracking | outputs | data
    group: str  # defects | files
    args: list[str]
    needs: tuple[str, ...]
    setup: Setup | None = None
    keep: tuple[str, ...] | None = None  # outputs that must survive; None: all that exist
    accept: bool = False  # exit 0 is the documented behaviour
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = 240.0


def build_defects(root: Path, mtl: Callable[[str], None]) -> None:
    copy_project(root)  # tiny params, git + DVC
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["train"]["epochs"] = 1
    raw["tracking"]["uri"], raw["tune"]["storage"] = "sqlite:///mlflow.db", "sqlite:///optuna.db"
    write_params(root, raw)  # the store inside the project, as in the shipped params.yaml
    list(map(mtl, ("prepare", "split", "train", "evaluate", "register")))


def build_files(root: Path, mtl: Callable[[str], None]) -> None:
    copy_project(root)
    raw = params_dict(root, {"image": dict(IMAGE), "tab": dict(FEATURES)}, dict(TASKS))
    raw["train"]["epochs"] = 1
    write_params(root, raw)
    image_table(root / "mine").to_csv(root / "mine" / "table.csv", index=False)
    list(map(mtl, ("split", "train")))


GROUPS = {"defects": build_defects, "files": build_files}


def write(rel: str, data: bytes | str) -> Setup:
    def setup(root: Path) -> None:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data.encode() if isinstance(data, str) else data)

    return setup


def remove(rel: str) -> Setup:
    return lambda root: (
        shutil.rmtree(root / rel) if (root / rel).is_dir() else (root / rel).unlink()
    )


def truncate(rel: str) -> Setup:
    return lambda root: (root / rel).write_bytes((root / rel).read_bytes()[:-200])


def yaml_edit(change: Callable[[str], str]) -> Setup:
    return lambda root: (root / "params.yaml").write_text(
        change((root / "params.yaml").read_text())
    )


def table(change: Callable[[pd.DataFrame], pd.DataFrame | str | bytes]) -> Setup:
    """Rewrite mine/table.csv: ``change`` gets it as strings, returns a frame or raw text."""

    def setup(root: Path) -> None:
        path = root / "mine" / "table.csv"
        out = change(pd.read_csv(path, dtype=str, keep_default_na=False))
        if isinstance(out, pd.DataFrame):
            out.to_csv(path, index=False)
        else:
            path.write_bytes(out.encode() if isinstance(out, str) else out)

    return setup


def cell(column: str, value: str, row: int = 4) -> Setup:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[row, column] = value
        return frame

    return table(change)


def image(data: bytes | Callable[[Path], Any]) -> Setup:
    """Replace mine/images/004.png (table row 4: CSV line 6) by bytes or by what data() makes."""

    def setup(root: Path) -> None:
        path = root / "mine" / "images" / "004.png"
        path.unlink()
        data(path) if callable(data) else path.write_bytes(data)

    return setup


def real_bomb(path: Path, side: int = 12000) -> None:
    """A valid greyscale PNG of side x side zeros: under 1 MB on disk, 144 MB decoded."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + payload))
        return struct.pack(">I", len(payload)) + kind + payload + crc

    squeeze, row = zlib.compressobj(9), b"\x00" * (side + 1)
    idat = b"".join(squeeze.compress(row) for _ in range(side)) + squeeze.flush()
    head = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def hold_lock(root: Path) -> dict[str, Any]:
    """Another process holding mlflow.db's write lock for the whole case."""
    code = (
        "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
        "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(900)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(root / "mlflow.db")], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return {"stop": lambda: (proc.kill(), proc.wait())}


def moved_copy(root: Path) -> dict[str, Any]:
    """The project copied elsewhere with its SQLite store (issue 18, item 3)."""
    dest = root.parent / "copied"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(root, dest, symlinks=True)
    return {"cwd": dest, "stop": lambda: shutil.rmtree(dest, ignore_errors=True)}


def both(*setups: Setup) -> Setup:
    return lambda root: [one(root) for one in setups]


def ragged(frame: pd.DataFrame) -> str:
    lines = frame.to_csv(index=False).splitlines()
    lines[6] += ",x,y"  # CSV line 7
    return "\n".join(lines) + "\n"


# --- the cases --------------------------------------------------------------------------


def P(name: str, sets: str | list[str], needs: str, stage: str = "split", **kw: Any) -> Case:
    """``mtlflow <stage> --set ...`` (sets: one or a list); needs: substrings joined by ' & '."""
    sets = [sets] if isinstance(sets, str) else sets
    args = stage.split() + [a for s in sets if s for a in ("--set", s)]
    category, group = kw.pop("category", "params"), kw.pop("group", "defects")
    return Case(name, category, group, args, tuple(needs.split(" & ")), **kw)


def R(name: str, stage: str, setup: Setup, needs: str, **kw: Any) -> Case:
    return P(name, [], needs, stage, category=kw.pop("category", "outputs"), setup=setup, **kw)


def T(name: str, stage: str, setup: Setup | None, needs: str, sets: str = "", **kw: Any) -> Case:
    return P(name, sets, needs, stage, category="tracking", setup=setup, **kw)


def D(name: str, setup: Setup | None, needs: str, sets: str = "", **kw: Any) -> Case:
    return P(name, sets, needs, "split", category="data", group="files", setup=setup, **kw)


SP = "tune.search_space="
BOMB = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 7))
NO_DB = ("data/splits", "models", "reports/metrics.json")
LOCK = {"MTLFLOW_LOCK_WAIT_S": "3"}
HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
IMG32 = "data.inputs.image.size=32"
ROW = "row 6"  # table row 4 (0-based) is CSV line 6 with the header
BEST = "reports/best_params.yaml"
MJ = "reports/metrics.json"
NOWHERE = "sqlite:////proc/no/m.db"  # a folder that cannot be created
DB = "mlflow.db"
ORIGINAL = (*NO_DB, DB, "mlruns")  # a copy must not write into the original's store
ENV_URI = {"MLFLOW_TRACKING_URI": NOWHERE}
bad_best = write(BEST, "params: {train.lr: abc}\n")
NOT_A_DB = b"SQLite format 3\x00" + bytes(range(256)) * 32
bomb = yaml_edit(lambda t: "l0: &l0 x\n" + BOMB + t.replace("\ntrain:\n", "\ntrain:\n  b: *l6\n"))
task_twice = yaml_edit(lambda t: t.replace("tasks:\n", "tasks:\n  pits_left: {kind: binary}\n"))
pixels16 = png(np.tile(np.linspace(0, 65535, 16).astype(np.uint16), (16, 1)))
noise = png(np.random.default_rng(0).integers(0, 256, (16, 16), np.uint8))
secret = write("secret.png", png(np.zeros((16, 16), np.uint8)))
latin1 = table(lambda f: f.assign(animal="caté").to_csv(index=False).encode("latin-1"))
id_as_path = table(lambda f: f.to_csv(index=False).replace("id,", "path,", 1))


def csv_as_parquet(root: Path) -> None:
    shutil.copy(root / "mine" / "table.csv", root / "mine" / "t.parquet")


CASES: list[Case] = [
    # params.yaml itself
    P("yaml_unclosed", [], "params.yaml & line", setup=yaml_edit(lambda t: t + "x: [1, 2\n")),
    P("yaml_empty_file", [], "params.yaml", setup=write("params.yaml", "")),
    P("yaml_binary", [], "params.yaml", setup=write("params.yaml", bytes(range(256)) * 4)),
    P("yaml_alias_bomb", [], "params.yaml & train.b", setup=bomb),
    P("yaml_section_twice", [], "line & model", setup=yaml_edit(lambda t: t + "model: {}\n")),
    P("yaml_task_twice", [], "line & pits_left", setup=task_twice),
    P("params_missing", "", "nope.yaml", "split --params nope.yaml"),
    P("params_a_folder", "", "data", "split --params data"),
    # --set
    P("set_typo_key", "train.epoch=3", "train.epoch"),
    P("set_no_equals", "train.lr", "train.lr"),
    P("set_broken_yaml", "train.lr=[1,", "train.lr"),
    P("lr_text", "train.lr=abc", "train.lr"),
    P("lr_nan", "train.lr=.nan", "train.lr"),
    P("epochs_bool", "train.epochs=true", "train.epochs"),
    P("split_over_one", "split.train=0.9", "split"),
    P("weighting_unknown", "train.weighting.method=bogus", "train.weighting & bogus"),
    P("static_negative", "train.weighting={method: static, weights: {pits_left: -1}}", "pits_left"),
    P("architecture_unknown", "model.architecture.name=foo", "model.architecture & foo"),
    P(
        "zero_experts",
        ["model.architecture={name: mmoe, experts: 0}", SP + "{}"],
        "experts",
        "train",
    ),
    P("backbone_unknown", "model.backbone.name=resnet9000", "model.backbone & resnet9000"),
    P("shared_depth_too_deep", "model.shared_depth=9", "shared_depth"),
    P("task_effect_unknown", "tasks.pits_left.sensitive_to=[wobble]", "pits_left & wobble"),
    P("source_unknown", "data.source=nope", "data.source & nope"),
    P("space_unknown_param", SP + "{train.nope: {low: 1, high: 2}}", "search_space.train.nope"),
    P("space_bad_choice", SP + "{train.weighting.method: {choices: [equal, bogus]}}", "bogus"),
    P("tune_storage_scheme", "tune.storage=foo://x", "tune.storage", "tune", keep=NO_DB),
    P("transform_unknown", "augment.geometric=[{name: NoSuchFlip}]", "NoSuchFlip"),
    P("transform_p_seven", "augment.geometric=[{name: VerticalFlip, p: 7}]", "augment.geometric"),
    P("remap_unknown_task", "augment.remaps={HorizontalFlip: {nosuch: pits_left}}", "nosuch"),
    P("device_cuda_on_cpu", "train.device=cuda", "train.device", "train"),
    P("alias_with_slash", "register.alias=bad/../alias", "register.alias", "register"),
    P("model_name_empty", "register.model_name=''", "register.model_name", "register"),
    P("experiment_empty", "tracking.experiment=''", "tracking.experiment", "train"),
    R("best_params_garbage", "train", write(BEST, "{{{: ["), "best_params.yaml", category="params"),
    R("best_params_bad_value", "train", bad_best, "best_params.yaml & train.lr", category="params"),
    # tracking
    T("uri_uncreatable", "train", None, "tracking.uri", "tracking.uri=" + NOWHERE),
    T("uri_unknown_scheme", "train", None, "tracking.uri", "tracking.uri=foo://bar"),
    T("uri_server_down", "train", None, "127.0.0.1:9", "tracking.uri=http://127.0.0.1:9", env=HTTP),
    T("env_uri_uncreatable", "train", None, "MLFLOW_TRACKING_URI", env=ENV_URI),
    T("db_corrupt", "register", write("mlflow.db", NOT_A_DB), "mlflow.db", keep=NO_DB),
    T("db_zero_bytes", "register", write("mlflow.db", b""), "mlflow.db", keep=NO_DB),
    T("db_locked_register", "register", hold_lock, "locked", env=LOCK),
    T("db_locked_train", "train", hold_lock, "locked", env=LOCK),
    T("copied_project_train", "train", moved_copy, "copied", keep=ORIGINAL),
    T("copied_project_register", "register", moved_copy, "copied", keep=ORIGINAL),
    # what earlier stages wrote
    R("metrics_truncated", "register", write(MJ, '{"tasks": {'), "metrics.json"),
    R("metrics_a_list", "register", write(MJ, "[]"), "metrics.json"),
    R("metrics_no_score", "register", write(MJ, '{"tasks": {}}'), "metrics.json"),
    R("run_json_missing", "register", remove("models/run.json"), "run.json"),
    R("run_json_no_model", "register", write("models/run.json", '{"run_id": "0a1b"}'), "run.json"),
    R("evaluate_no_model", "evaluate", remove("models"), "models", keep=("data/splits", DB)),
    R("weights_truncated", "evaluate", truncate("models/model.pt"), "model.pt"),
    R("model_spec_garbage", "evaluate", write("models/model_spec.json", "{"), "model_spec.json"),
    R("evaluate_no_splits", "evaluate", remove("data/splits"), "split", keep=("models", DB)),
    R("labels_truncated", "evaluate", truncate("data/splits/test/labels.npy"), "labels.npy"),
    P("train_stale_split", "data.synthetic.image_size=48", "split", "train", category="outputs"),
    R("summary_no_metrics", "summary", remove(MJ), "metrics.json"),
    # the user's table and files (split in the `files` project)
    D("table_missing", remove("mine/table.csv"), "table.csv"),
    D("table_zero_bytes", write("mine/table.csv", ""), "table.csv"),
    D("table_binary", write("mine/table.csv", b"\xff\xfe\x00garbage\x00" * 50), "table.csv"),
    D("table_header_only", table(lambda f: f.iloc[:0]), "table.csv"),
    D("table_semicolons", table(lambda f: f.to_csv(index=False, sep=";")), "path"),
    D("table_latin1", latin1, "table.csv"),
    D("table_ragged_row", table(ragged), "table.csv & line 7|row 7"),
    D("parquet_that_is_csv", csv_as_parquet, "t.parquet", "data.table=t.parquet"),
    D("column_path_missing", table(lambda f: f.drop(columns="path")), "path"),
    D("column_label_missing", table(lambda f: f.drop(columns="grade")), "grade"),
    D("column_named_twice", id_as_path, "path & twice|duplicate"),
    D("label_unknown_class", cell("animal", "cow"), f"{ROW} & animal & cow"),
    D("label_ordinal_fraction", cell("grade", "1.5"), f"{ROW} & grade"),
    D("label_task_all_missing", table(lambda f: f.assign(grade="")), "grade"),
    D("numeric_text", cell("length", "abc"), f"{ROW} & length"),
    D("numeric_overflow", cell("length", "1e400"), f"{ROW} & length"),
    D("image_missing", remove("mine/images/004.png"), f"{ROW} & path"),
    D("image_absolute_path", cell("path", "/etc/passwd"), f"{ROW} & outside"),
    D("image_dotdot_escape", both(secret, cell("path", "../secret.png")), f"{ROW} & outside"),
    D("image_path_nul_byte", cell("path", "images/004.png\x00.txt"), f"{ROW} & path"),
    D("image_text_file", image(b"not a png at all\n"), f"{ROW} & path"),
    D("image_truncated", image(noise[:120]), f"{ROW} & path"),
    D("image_dev_zero", image(lambda p: p.symlink_to("/dev/zero")), f"{ROW} & path", timeout=30),
    D("image_fifo", image(os.mkfifo), f"{ROW} & path", timeout=30),
    D("image_one_pixel", image(png(np.zeros((1, 1), np.uint8))), f"{ROW} & 1 x 1"),
    D("image_one_pixel_32", image(png(np.zeros((1, 1), np.uint8))), f"{ROW} & 1 x 1", IMG32),
    D("image_header_12000px", image(png_header_only(12000, 12000)), f"{ROW} & pixel"),
    D("image_real_bomb", image(real_bomb), f"{ROW} & pixel"),
    D("image_16_bit", image(pixels16), "", accept=True),
    D("image_rgba", image(png(np.zeros((16, 16, 4), np.uint8))), "", accept=True),
    D("row_duplicated", table(lambda f: pd.concat([f, f.iloc[[4]]])), "repeats"),
    D("file_named_twice", cell("path", "./images/005.png"), "repeats & 005.png"),
    D("group_column_missing", None, "nosuch", "data.group=nosuch"),
]
