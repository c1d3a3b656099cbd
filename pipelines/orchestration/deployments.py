"""``mtlflow deploy``: create the work pools ``prefect.yaml`` names and apply its deployments.

Needs a running Prefect server (``prefect server start``) that ``PREFECT_API_URL`` points at:
deployments applied to the ephemeral server a plain ``prefect`` command would start could
never be picked up by a worker.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from pipelines.errors import MtlflowError

POOL_TYPE = "process"
# No limit on the pool: several workers, each in its own project copy, run flow runs at once
# (a shared study). Runs that share a copy's files are serialised by the flows' project lock,
# and `--limit 1` keeps each worker to one at a time.
WORKER = "prefect worker start --pool {pool} --limit 1"


def deployment_pools(prefect_yaml: Path) -> dict[str, list[str]]:
    """Work pool -> the deployments (``flow/name``) in ``prefect.yaml`` that run on it."""
    from prefect.flows import load_flow_from_entrypoint

    if not prefect_yaml.is_file():
        raise MtlflowError(f"{prefect_yaml}: not found; run `mtlflow deploy` in the project root")
    config = yaml.safe_load(prefect_yaml.read_text()) or {}
    pools: dict[str, list[str]] = {}
    for entry in config.get("deployments") or []:
        pool = (entry.get("work_pool") or {}).get("name")
        if not pool:
            raise MtlflowError(f"{prefect_yaml}: deployment {entry.get('name')!r} names no pool")
        try:
            flow_name = load_flow_from_entrypoint(str(entry.get("entrypoint"))).name
        except Exception as exc:  # ImportError, MissingFlowError, ScriptError, ...
            raise MtlflowError(
                f"{prefect_yaml}: entrypoint {entry.get('entrypoint')!r}: {exc}"
            ) from None
        pools.setdefault(pool, []).append(f"{flow_name}/{entry.get('name')}")
    if not pools:
        raise MtlflowError(f"{prefect_yaml}: no deployments")
    return pools


def api_url() -> str:
    """The Prefect API this process talks to; a clear error when none is set or it is down."""
    from prefect.client.orchestration import get_client
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        raise MtlflowError(
            "no Prefect server configured: start one with `prefect server start`, then "
            "`export PREFECT_API_URL=http://127.0.0.1:4200/api` (or `prefect config set ...`)"
        )
    with get_client(sync_client=True) as client:
        problem = client.api_healthcheck()
    if problem is not None:
        raise MtlflowError(
            f"Prefect server at {url} is not reachable ({problem}); start it with "
            "`prefect server start`"
        )
    return url


def ensure_pool(name: str) -> tuple[bool, int | None]:
    """Create process work pool ``name`` unless it exists; whether it was created, and its
    concurrency limit. An existing pool of another type is an error: its worker could not run
    these."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=name, type=POOL_TYPE))
            return True, None
    if pool.type != POOL_TYPE:
        raise MtlflowError(f"work pool {name!r} is of type {pool.type!r}; expected {POOL_TYPE!r}")
    return False, pool.concurrency_limit


def deploy_project(root: Path, names: Sequence[str] = ()) -> list[str]:
    """Apply the deployments of ``root/prefect.yaml`` (all, or ``names`` as ``flow/name``)
    with ``prefect deploy``; returns the work pools they run on."""
    pools = deployment_pools(root / "prefect.yaml")
    url = api_url()
    print(f"deploy: Prefect API {url}")
    for pool in pools:
        created, limit = ensure_pool(pool)
        state = "created" if created else "exists"
        print(f"deploy: work pool {pool!r} ({POOL_TYPE}) {state}: {', '.join(pools[pool])}")
        if limit is not None:
            print(
                f"deploy: work pool {pool!r} runs at most {limit} flow run(s) at once, across "
                f"all its workers (`prefect work-pool clear-concurrency-limit {pool}` lifts it)"
            )
    selection = [arg for name in names for arg in ("--name", name)] or ["--all"]
    command = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", *selection]
    result = subprocess.run(command, cwd=root, check=False)
    if result.returncode != 0:
        raise MtlflowError(f"`prefect deploy` failed (exit {result.returncode}); see above")
    used = sorted(pools)
    print("\nStart a worker in this directory (it runs one flow run at a time):")
    for pool in used:
        print(f"  {WORKER.format(pool=pool)}")
    print("or, on another machine, in a clone of this commit (README 'Scale out'):")
    for pool in used:
        print(f"  MTLFLOW_PROJECT_DIR=/path/to/clone {WORKER.format(pool=pool)}")
    print("Then trigger a run, e.g.:")
    print("  prefect deployment run 'mtl-pipeline/default' --watch")
    return used
