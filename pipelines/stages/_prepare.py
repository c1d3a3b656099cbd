"""``prepare``: write ``data.source``'s files into ``data/raw/`` (a generated dataset, or a
note pointing at your own files)."""

from __future__ import annotations

from pipelines.config import Params
from pipelines.data.sources import SOURCES
from pipelines.files import ProjectPaths, atomic_dir


def prepare(params: Params, paths: ProjectPaths) -> int:
    """Write ``data/raw/`` (replaced only if it succeeds); returns the samples written."""
    with atomic_dir(paths.raw_dir) as scratch:
        count = SOURCES.get(params.data.source)().write(params, scratch)
    if count:
        print(f"prepare: wrote {count} samples ({params.data.source}) to data/raw/")
    return count
