"""Project file layout and writes that never leave a half-written output behind."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ProjectPaths:
    """Where stages read and write, relative to the project root (see DESIGN.md)."""

    root: Path

    @property
    def raw_dir(self) -> Path:
        return self.root / "data" / "raw"

    @property
    def manifest(self) -> Path:
        return self.raw_dir / "manifest.csv"

    @property
    def splits_dir(self) -> Path:
        return self.root / "data" / "splits"

    def split_dir(self, name: str) -> Path:
        """One split's arrays (``labels.npy``, ``input_<name>.npy``), memory-mapped by training."""
        return self.splits_dir / name

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def run_info(self) -> Path:
        return self.models_dir / "run.json"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def plots_dir(self) -> Path:
        return self.reports_dir / "plots"

    @property
    def metrics_file(self) -> Path:
        return self.reports_dir / "metrics.json"

    @property
    def registry_file(self) -> Path:
        return self.reports_dir / "registry.json"

    @property
    def affinity_file(self) -> Path:
        return self.reports_dir / "affinity.json"

    @property
    def best_params(self) -> Path:
        return self.reports_dir / "best_params.yaml"

    @property
    def tune_dir(self) -> Path:
        return self.reports_dir / "tune"

    @property
    def baselines_file(self) -> Path:
        return self.reports_dir / "baselines.json"

    @property
    def diagnosis_file(self) -> Path:
        return self.reports_dir / "diagnosis.md"

    @property
    def train_checkpoint(self) -> Path:
        """The state of an unfinished ``train`` (no stage's output: deleted when it ends)."""
        return self.root / ".mtlflow" / "train-checkpoint.pt"

    @property
    def flow_lock(self) -> Path:
        """Held by the Prefect flow run working in this project copy (its files are shared)."""
        return self.root / ".mtlflow" / "flow.lock"


def sqlite_lock(url: str) -> AbstractContextManager[Any]:
    """A lock file beside a ``sqlite:///`` database, for work that two processes must not do
    at once on it (creating its schema); a no-op for any other URL."""
    if url.startswith("sqlite:///"):
        from filelock import FileLock

        # one lock per file in a process, re-entrant: a step under it may take it again
        return FileLock(url.removeprefix("sqlite:///") + ".lock", is_singleton=True)
    return nullcontext()


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a scratch directory that replaces ``target`` only if the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield scratch
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    backup = target.with_name(f".{target.name}.old")
    if target.exists():
        shutil.rmtree(backup, ignore_errors=True)
        target.rename(backup)
    scratch.rename(target)
    shutil.rmtree(backup, ignore_errors=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())


def read_text(path: Path) -> str:
    """A text file's content as UTF-8; ``MtlflowError`` naming the file and the first byte
    that is not (a binary file saved under the name), not Python's decoding traceback."""
    from pipelines.errors import MtlflowError

    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MtlflowError(
            f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None


# a JSON value's kind by its Python type (what a ``needs`` entry of ``read_json`` names)
JSON_KINDS: dict[str, tuple[type, ...]] = {
    "number": (int, float),
    "string": (str,),
    "object": (dict,),
    "list": (list,),
}


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return next((k for k, t in JSON_KINDS.items() if isinstance(value, t)), "null")


def read_json(path: Path, produced_by: str, needs: dict[str, str] | None = None) -> Any:
    """A JSON file another stage wrote (``produced_by``), with the dotted keys of ``needs``
    holding values of their kind (``{"summary.mean_score": "number"}``): ``MtlflowError``
    naming the file, the key and the stage that rewrites it, not a KeyError later."""
    from pipelines.errors import MtlflowError

    if not path.is_file():
        raise MtlflowError(f"{path}: not found; run `mtlflow {produced_by}` (or `dvc repro`) first")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MtlflowError(
            f"{path}: not valid JSON ({exc}); truncated or edited? rerun `mtlflow {produced_by}`"
        ) from None
    rerun = f"; rerun `mtlflow {produced_by}`"
    for key, kind in (needs or {}).items():
        node, parts = data, key.split(".")
        for depth, part in enumerate(parts):
            if not isinstance(node, dict):
                where = ".".join(parts[:depth]) or "the top level"
                raise MtlflowError(
                    f"{path}: expected an object at {where} (holding {key}), "
                    f"got a {_json_kind(node)}{rerun}"
                )
            if part not in node:
                raise MtlflowError(f"{path}: no {key} (a {kind}){rerun}")
            node = node[part]
        if _json_kind(node) != kind:
            raise MtlflowError(f"{path}: {key} is a {_json_kind(node)}, expected a {kind}{rerun}")
    return data
