"""``data.source: files``: the user's own dataset under ``data.dir``; nothing is generated."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.data.sources import SOURCES, Source

if TYPE_CHECKING:
    from pipelines.config import Params


@SOURCES.register("files")
class YourFiles(Source):
    generated = False

    def write(self, params: Params, out: Path) -> int:
        """A note saying where the data is, so ``data/raw`` exists for DVC."""
        where = f"{params.data.dir}/{params.data.table}"
        (out / "SOURCE.txt").write_text(f"data.source is files: split reads {where}\n")
        print(f"prepare: data.source is files, nothing to generate; split reads {where}")
        return 0
