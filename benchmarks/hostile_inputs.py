"""Hostile inputs audit (issue 18): bad input a careless user or an attacker gives, each
through the real `mtlflow` command line, and what came of it.

Every case (benchmarks/hostile_cases.py) runs in a fresh copy of a small prepared project
(the tiny synthetic-defects project, trained, evaluated and registered; or a project of
the user's own PNGs and table, split and trained) in a scratch folder deleted at the end,
and is classified as:

  clear      non-zero exit, no traceback, one error at the end of the output: an `error:`
             line (or the CLI's usage box) with at most indented detail lines under it,
             naming what the case requires (the file, row, column or key)
  accepted   exit 0 where accepting is the documented behaviour (16-bit or RGBA images)
  unclear    non-zero exit without a traceback, but the error does not name it, is not the
             last thing printed, or sprawls (over 12 lines or 2000 characters)
  silent     exit 0: the bad input was accepted
  traceback  "Traceback" in the output
  lost       an earlier output (data/splits, models/, reports/metrics.json, mlflow.db, ...)
             deleted, rewritten or added to by the failing command, a corrupt or shrunken
             tracking store, or a half-written leftover (a dot or tmp entry) in data/,
             models/ or reports/
  hung       still running at the case's timeout (killed)

    python benchmarks/hostile_inputs.py                  # every case: about 13 min, 2 CPUs
    python benchmarks/hostile_inputs.py --only image_    # the cases whose name holds it

Prints a line per case as it goes, then a markdown table, the cases that are not clear by
category, and the totals; each case's command and output go to
benchmarks/out/hostile_inputs/<case>.log, all results to results.json there. Exits 1 when
any case is a traceback, lost or hung.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

from hostile_cases import CASES, GROUPS, Case  # noqa: E402

from tests.helpers import command_env  # noqa: E402

OUTCOMES = ("clear", "accepted", "unclear", "silent", "traceback", "lost", "hung")
FAILING = ("traceback", "lost", "hung")
KEEP = ("data/splits", "models", "reports/metrics.json", "mlflow.db")
SCANNED = ("data", "models", "reports")  # for half-written leftovers
LOGS = HERE / "out" / "hostile_inputs"
BOX = ("│", "╰", "╭")


def mtlflow(cwd: Path, args: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """One CLI process; its exit status, output and time (rc None: killed at the timeout)."""
    start = time.monotonic()
    try:
        done = subprocess.run(
            ["mtlflow", *args],
            cwd=cwd,
            env=command_env(**env),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
        )
        rc, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        text = [b.decode(errors="replace") if b else "" for b in (exc.stdout, exc.stderr)]
        rc, out, err = None, *text
    return {"rc": rc, "out": out, "err": err, "s": time.monotonic() - start}


def build(group: str, scratch: Path) -> None:
    """The group's project, made once in scratch/group/proj and kept in scratch/group/base.

    Cases restore it to the same path: the tracking store records where its artifacts are,
    and a copy elsewhere is refused as a copied project (only the case about that wants it).
    """
    proj = scratch / group / "proj"

    def stage(name: str) -> None:
        result = mtlflow(proj, [name], {}, 900)
        if result["rc"] != 0:
            sys.exit(f"building {group}: mtlflow {name} failed\n{result['out']}{result['err']}")

    start = time.monotonic()
    print(f"building the {group} project in {proj} ...", flush=True)
    GROUPS[group](proj, stage)
    shutil.copytree(proj, scratch / group / "base", symlinks=True)
    print(f"  built in {time.monotonic() - start:.0f} s", flush=True)


def restore(group: str, scratch: Path) -> Path:
    proj = scratch / group / "proj"
    shutil.rmtree(proj, ignore_errors=True)
    shutil.copytree(scratch / group / "base", proj, symlinks=True)
    return proj


def store_state(db: Path) -> tuple[str, tuple[int, ...]]:
    """The SQLite store's integrity and its counts of runs, model versions and aliases."""
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
            check = con.execute("PRAGMA quick_check").fetchone()[0]
            tables = ("runs", "model_versions", "registered_model_aliases")
            counts = tuple(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables)
        return check, counts
    except sqlite3.Error as exc:
        return f"unreadable ({exc})", ()


def snapshot(root: Path, keep: tuple[str, ...]) -> dict[str, Any]:
    """Hashes of every file under the kept paths, the store's state, and data/, models/ and
    reports/ entries (for leftovers)."""
    files: dict[str, Any] = {}
    for rel in keep:
        path = root / rel
        if rel.endswith(".db"):
            files[rel] = store_state(path) if path.is_file() else None
            continue
        for item in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if item.is_file():
                files[str(item.relative_to(root))] = hashlib.sha256(item.read_bytes()).hexdigest()
    entries = {
        str(p.relative_to(root))
        for d in SCANNED
        if (root / d).is_dir()
        for p in (root / d).rglob("*")
    }
    return {"files": files, "entries": entries}


def losses(
    before: dict[str, Any], after: dict[str, Any], keep: tuple[str, ...], strict: bool
) -> list[str]:
    """What the command lost or left half-written; with ``strict`` (it failed, or it ran in
    a copy of the project) a file rewritten or added under a kept folder counts too."""
    found = []
    for rel, old in before["files"].items():
        new = after["files"].get(rel)
        if rel.endswith(".db") and old is not None:
            if new is None:
                found.append(f"{rel} deleted")
            elif new[0] != "ok":
                found.append(f"{rel} corrupt: {new[0]}")
            elif any(b < a for a, b in zip(old[1], new[1], strict=False)):
                found.append(f"{rel} lost rows (runs, versions, aliases {old[1]} -> {new[1]})")
        elif new is None:
            found.append(f"{rel} deleted")
        elif strict and new != old:
            found.append(f"{rel} rewritten")
    if strict:
        dirs = [k for k in keep if not k.endswith(".db")]
        added = set(after["files"]) - set(before["files"])
        found += [
            f"{rel} added" for rel in sorted(added) if any(rel.startswith(d + "/") for d in dirs)
        ]
    for rel in sorted(after["entries"] - before["entries"]):
        name = Path(rel).name
        if name.startswith(".") or "tmp" in name.lower() or "partial" in name.lower():
            found.append(f"{rel} left behind")
    return found


def error_block(err: str) -> list[str]:
    """From the `error:` line (or the usage box) to the end of stderr, blank lines dropped."""
    lines = [line.rstrip() for line in err.splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if line.startswith("error:") or "─ Error ─" in line:
            return lines[i:]
    return []


def exception_text(err: str) -> str:
    """The exception a traceback ends with (below rich's box of frames), on one line."""
    lines = err.splitlines()
    ends = [i for i, line in enumerate(lines) if line.startswith("╰")]
    return " ".join(line.strip() for line in lines[ends[-1] + 1 if ends else -1 :])


def last_line(text: str) -> str:
    lines = [line.strip(" │") for line in text.splitlines() if line.strip(" │╰─╯")]
    return lines[-1] if lines else "(no output)"


def judge(case: Case, result: dict[str, Any], found: list[str]) -> tuple[str, str]:
    rc, out, err = result["rc"], result["out"], result["err"]
    if "Traceback" in out + err:
        return "traceback", exception_text(err)
    if found:
        return "lost", "; ".join(found)
    if rc is None:
        return "hung", f"still running after {case.timeout:.0f} s: {last_line(out + err)}"
    if rc == 0:
        if case.accept:
            return "accepted", "exit 0, as documented"
        return "silent", f"exit 0: {last_line(out)}"
    block = error_block(err)
    if not block:
        return "unclear", f"exit {rc}, no error line: {last_line(err or out)}"
    if case.accept:
        return "unclear", f"refused what is documented to work: {block[0]}"
    text = "\n".join(block)
    missing = [n for n in case.needs if not any(alt in text for alt in n.split("|"))]
    stray = [line for line in block[1:] if not line[:1].isspace() and not line.startswith(BOX)]
    if missing:
        return "unclear", f"does not name {' / '.join(missing)}: {block[0][:150]}"
    if stray:
        return "unclear", f"{len(stray)} unindented lines after the error, e.g. {stray[0][:100]}"
    if len(block) > 12 or len(text) > 2000:
        return "unclear", f"sprawls: {len(block)} lines, {len(text)} characters"
    return "clear", " ".join(line.strip(" │") for line in block[:2])[:160]


def run_case(case: Case, scratch: Path) -> dict[str, Any]:
    root = restore(case.group, scratch)
    keep = case.keep if case.keep is not None else KEEP
    keep = tuple(k for k in keep if (root / k).exists())
    untouched = snapshot(root, keep)  # the store as the earlier stages left it
    ctx = case.setup(root) if case.setup else None
    ctx = ctx if isinstance(ctx, dict) else {}
    before = snapshot(root, keep)  # the files as the command finds them
    before["files"] |= {k: v for k, v in untouched["files"].items() if k.endswith(".db")}
    try:
        result = mtlflow(ctx.get("cwd", root), case.args, case.env, case.timeout)
    finally:
        if "stop" in ctx:
            ctx["stop"]()
    after = snapshot(root, keep)
    # a failing command, or one run in a copy, must leave these files exactly as they were
    found = losses(before, after, keep, strict=result["rc"] != 0 or "cwd" in ctx)
    outcome, detail = judge(case, result, found)
    detail = "".join(c if c.isprintable() else repr(c)[1:-1] for c in detail)[:300]
    command = "mtlflow " + " ".join(case.args)
    log = f"$ {command}\nexit {result['rc']}  ({outcome}: {detail})\n"
    (LOGS / f"{case.name}.log").write_text(
        f"{log}--- stdout\n{result['out']}--- stderr\n{result['err']}"
    )
    return {
        "case": case.name,
        "category": case.category,
        "command": command,
        "rc": result["rc"],
        "outcome": outcome,
        "seconds": round(result["s"], 1),
        "detail": detail,
    }


def report(rows: list[dict[str, Any]], wall: float) -> Counter[str]:
    cell = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    print("\n| case | category | command | exit | outcome | s | detail |")
    print("|---|---|---|---:|---|---:|---|")
    for r in rows:
        fields = (
            r["case"],
            r["category"],
            r["command"],
            r["rc"],
            r["outcome"],
            r["seconds"],
            r["detail"],
        )
        print("| " + " | ".join(cell(f) for f in fields) + " |")
    print("\nNot clear, by category:")
    for category in dict.fromkeys(r["category"] for r in rows):
        bad = [
            r
            for r in rows
            if r["category"] == category and r["outcome"] not in ("clear", "accepted")
        ]
        print(f"  {category}: {len(bad) or 'none'}")
        for r in bad:
            print(f"    {r['case']} [{r['outcome']}]: {r['detail'][:200]}")
    totals = Counter(r["outcome"] for r in rows)
    print("\n" + ", ".join([f"tried {len(rows)}"] + [f"{o} {totals[o]}" for o in OUTCOMES]))
    print(f"wall time {wall / 60:.1f} min")
    return totals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", default=[], help="cases whose name holds it")
    parser.add_argument("--scratch", type=Path, help="folder for the projects (default: a temp)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    cases = [c for c in CASES if not args.only or any(s in c.name for s in args.only)]
    if not cases:
        parser.error("no case matches --only")
    names = [c.name for c in CASES]
    assert len(set(names)) == len(names), "case names must be unique"
    start = time.monotonic()
    LOGS.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="mtlflow-hostile-", dir=args.scratch))
    rows = []
    try:
        for group in dict.fromkeys(c.group for c in cases):
            build(group, scratch)
        for i, case in enumerate(cases, 1):
            row = run_case(case, scratch)
            rows.append(row)
            print(
                f"[{i:3d}/{len(cases)}] {case.category:8} {case.name:26} {row['outcome']:9} "
                f"{row['seconds']:5.1f} s  {row['detail'][:90]}",
                flush=True,
            )
    finally:
        if args.keep:
            print(f"scratch kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    totals = report(rows, time.monotonic() - start)
    (LOGS / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    return 1 if any(totals[o] for o in FAILING) else 0


if __name__ == "__main__":
    sys.exit(main())
