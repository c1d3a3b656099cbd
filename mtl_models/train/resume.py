"""Resumable training: what an epoch boundary must hold to continue as if never stopped.

A checkpoint is written after every epoch (atomically: a kill leaves the previous one) and
holds the model, optimiser and schedule, the weighting method's state, early stopping (best
score, best weights, epochs waited, the history), the random streams (torch, numpy, Python,
CUDA) and the loader's position (its shuffling generator, a sampler's own generator and the
augmentation's streams). Resuming from it gives the weights of an uninterrupted run, to float
tolerance, when the loader runs in the main process (``num_workers: 0``): worker processes
keep their augmentation streams to themselves, so with workers the resumed epochs draw fresh
(still seeded) augmentations.

Nothing is pickled: the file holds tensors and plain values only and is read with
``torch.load(weights_only=True)``. The weighting's state is found by walking its modules'
attributes (torchjd keeps DWA's loss history, GradVac's EMA, FAMO's Adam as plain attributes),
so a new method needs nothing here; an attribute that is not plain data (a solver's problem
object) is left to be rebuilt from the rest.
"""

from __future__ import annotations

import io
import json
import os
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

FORMAT = 1
_MODULE_KEYS = frozenset(vars(nn.Module()))
_MAX_DEPTH = 6


class CheckpointError(ValueError):
    """A checkpoint that cannot be read (truncated, another format, another trainer)."""


class _NotPlain(TypeError):
    pass


def plain(value: Any) -> Any:
    """``value`` as data ``torch.load(weights_only=True)`` reads back: tensors (on the CPU),
    numbers, strings, lists, tuples and str-keyed dicts; numpy arrays and generators are
    tagged. Raises ``_NotPlain`` for anything else."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.dtype):  # part of GradVac's state key
        return {"__dtype__": str(value).removeprefix("torch.")}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise _NotPlain(f"numpy array of {value.dtype}")
        wide = value.astype(np.float64 if value.dtype.kind == "f" else np.int64)
        return {"__ndarray__": torch.from_numpy(wide), "dtype": value.dtype.str}
    if isinstance(value, np.random.Generator):
        return {"__numpy_generator__": plain(value.bit_generator.state)}
    if isinstance(value, random.Random):
        return {"__python_random__": value.getstate()}
    if isinstance(value, tuple | list):
        items = [plain(v) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: plain(v) for k, v in value.items()}
    raise _NotPlain(type(value).__name__)


def unplain(value: Any, device: torch.device | None = None) -> Any:
    """The inverse of :func:`plain`; tensors go to ``device`` when given."""
    if isinstance(value, Tensor):
        return value if device is None else value.to(device)
    if isinstance(value, dict):
        if "__ndarray__" in value:
            return value["__ndarray__"].numpy().astype(np.dtype(value["dtype"]))
        if "__dtype__" in value:
            return getattr(torch, value["__dtype__"])
        if "__numpy_generator__" in value:
            state = unplain(value["__numpy_generator__"])
            generator = np.random.Generator(getattr(np.random, state["bit_generator"])())
            generator.bit_generator.state = state
            return generator
        if "__python_random__" in value:
            stream = random.Random()
            stream.setstate(_tuples(value["__python_random__"]))
            return stream
        return {k: unplain(v, device) for k, v in value.items()}
    if isinstance(value, list | tuple):
        items = [unplain(v, device) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    return value


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list | tuple) else value


def module_state(module: nn.Module) -> dict[str, Any]:
    """Parameters and buffers, plus every plain attribute of every submodule (and the state
    of an optimiser kept as an attribute, as FAMO keeps its Adam)."""
    attributes: dict[str, dict[str, Any]] = {}
    for path, sub in module.named_modules():
        found = {}
        for key, value in vars(sub).items():
            if key in _MODULE_KEYS:
                continue
            if isinstance(value, torch.optim.Optimizer):
                found[key] = {"__optimizer__": value.state_dict()}
                continue
            try:
                found[key] = plain(value)
            except _NotPlain:
                continue  # rebuilt from the rest (e.g. a cvxpy problem)
        attributes[path] = found
    return {"tensors": module.state_dict(), "attributes": attributes}


def load_module_state(module: nn.Module, state: Mapping[str, Any], device: torch.device) -> None:
    tensors = state["tensors"]
    missing, lazy = module.load_state_dict(tensors, strict=False)
    if missing:
        raise CheckpointError(f"{type(module).__name__}: the checkpoint lacks {missing}")
    for key in lazy:  # buffers a method registers at its first step (GradVac's EMA)
        owner, _, name = key.rpartition(".")
        setattr(module.get_submodule(owner), name, tensors[key].to(device))
    subs = dict(module.named_modules())
    for path, found in state["attributes"].items():
        sub = subs[path]
        for key, saved in found.items():
            current = getattr(sub, key, None)
            if isinstance(saved, dict) and "__optimizer__" in saved:
                if not isinstance(current, torch.optim.Optimizer):
                    raise CheckpointError(
                        f"{type(sub).__name__}.{key}: the checkpoint holds an optimiser's "
                        "state, but the method has not created its optimiser"
                    )
                current.load_state_dict(saved["__optimizer__"])
            else:
                setattr(sub, key, unplain(saved, device))


def random_streams(root: object) -> dict[str, Any]:
    """Every numpy ``Generator`` and ``random.Random`` reachable from ``root``'s attributes
    (an augmentation pipeline's per-transform streams), by attribute path."""
    streams: dict[str, Any] = {}
    seen: set[int] = set()

    def visit(obj: object, path: str, depth: int) -> None:
        if id(obj) in seen or depth > _MAX_DEPTH:
            return
        seen.add(id(obj))
        items = (
            enumerate(obj)
            if isinstance(obj, list | tuple)
            else vars(obj).items()
            if hasattr(obj, "__dict__") and not isinstance(obj, type | nn.Module)
            else ()
        )
        for key, value in items:
            where = f"{path}.{key}" if path else str(key)
            if isinstance(value, np.random.Generator | random.Random):
                streams[where] = plain(value)
            elif isinstance(value, list | tuple) or hasattr(value, "__dict__"):
                visit(value, where, depth + 1)

    visit(root, "", 0)
    return streams


def set_random_streams(root: object, streams: Mapping[str, Any]) -> None:
    for where, saved in streams.items():
        *parents, last = where.split(".")
        obj = root
        for key in parents:
            obj = obj[int(key)] if isinstance(obj, list | tuple) else getattr(obj, key)
        current = obj[int(last)] if isinstance(obj, list | tuple) else getattr(obj, last)
        restored = unplain(saved)
        if isinstance(current, np.random.Generator):
            current.bit_generator.state = restored.bit_generator.state
        else:
            current.setstate(restored.getstate())


def global_random_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": plain(np.random.get_state(legacy=False)),
        "python": random.getstate(),
    }


def set_global_random_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(unplain(state["numpy"]))
    random.setstate(_tuples(state["python"]))


def loader_state(loader: Any) -> dict[str, Any]:
    """Where a loader's next epoch starts: its shuffling generator, a batch sampler's own
    generator, and the main-process augmentation's streams."""
    state: dict[str, Any] = {}
    if getattr(loader, "generator", None) is not None:
        state["generator"] = loader.generator.get_state()
    rng = getattr(getattr(loader, "batch_sampler", None), "rng", None)
    if isinstance(rng, np.random.Generator):
        state["sampler"] = plain(rng)
    transform = getattr(getattr(loader, "dataset", None), "transform", None)
    if transform is not None:
        state["transform"] = random_streams(transform)
    return state


def set_loader_state(loader: Any, state: Mapping[str, Any]) -> None:
    if "generator" in state:
        loader.generator.set_state(state["generator"])
    if "sampler" in state:
        loader.batch_sampler.rng.bit_generator.state = unplain(state["sampler"]).bit_generator.state
    if "transform" in state:
        set_random_streams(loader.dataset.transform, state["transform"])


def history_json(history: list[Any]) -> str:
    """Epoch logs (dataclasses of numbers, strings, lists and dicts) as JSON text."""
    return json.dumps([asdict(log) for log in history], default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} in an epoch log")


def save(path: Path, state: Mapping[str, Any]) -> None:
    """Write atomically: a kill mid-write leaves the previous checkpoint whole."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.partial")
    with open(scratch, "wb") as handle:
        handle.write(buffer.getbuffer())
        handle.flush()
        os.fsync(handle.fileno())
    scratch.replace(path)


def load(path: Path) -> dict[str, Any]:
    """A checkpoint written by :func:`save`; ``CheckpointError`` naming the file otherwise."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a torch file, or not plain data
        raise CheckpointError(f"{path}: not a readable training checkpoint ({exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a training checkpoint of format {FORMAT}")
    return state


@dataclass
class Checkpoint:
    """Where a training saves its state after every epoch, and the state to resume from.

    ``fingerprint`` identifies what is trained (the caller's: params, split, processes); a
    file with another fingerprint is not resumed. ``tags``: what the caller keeps with the
    state (the MLflow run to continue). ``write``: False in the processes of a DDP run that
    only read it (rank 0 writes)."""

    path: Path
    fingerprint: str
    tags: dict[str, str] = field(default_factory=dict)
    write: bool = True
    state: dict[str, Any] | None = None  # the trainer's state to resume from

    @classmethod
    def open(cls, path: Path, fingerprint: str, write: bool = True) -> Checkpoint:
        """The checkpoint at ``path``, holding the state to resume from when the file is
        there and was written for ``fingerprint``; otherwise a fresh one (saying why)."""
        checkpoint = cls(path, fingerprint, write=write)
        if not path.exists():
            return checkpoint
        try:
            saved = load(path)
        except CheckpointError as exc:
            print(f"train: {exc}; starting from epoch 1")
            return checkpoint
        if saved.get("fingerprint") != fingerprint:
            print(f"train: {path} was written for other params or another split; starting over")
            return checkpoint
        checkpoint.state, checkpoint.tags = saved["trainer"], dict(saved["tags"])
        return checkpoint

    @property
    def epoch(self) -> int:
        """The last epoch the state to resume from completed (0: none)."""
        return 0 if self.state is None else int(self.state["epoch"])

    def save(self, trainer_state: Mapping[str, Any]) -> None:
        if self.write:
            save(
                self.path,
                {"fingerprint": self.fingerprint, "tags": self.tags, "trainer": trainer_state},
            )

    def discard(self) -> None:
        """The training it served has ended and its model is written."""
        if self.write:
            self.path.unlink(missing_ok=True)
