"""A throwaway PostgreSQL 15 cluster for tests: ``initdb`` + ``pg_ctl`` in a temporary folder,
listening on a free loopback port, stopped and deleted at the end, failing or not.

PostgreSQL refuses to run as root: as root (a container) the cluster runs as the
``postgres`` user through ``runuser``."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import SYSTEM_TMP


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def available() -> str | None:
    """Why no cluster can start here (None: one can)."""
    if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
        return "PostgreSQL's initdb/pg_ctl are not on PATH"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a postgres user"
    return None


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """Yields the server's URL, ``postgresql://postgres@127.0.0.1:<port>`` (trust auth)."""
    reason = available()
    if reason:
        pytest.skip(reason)
    # in the system's folder: the ``postgres`` user cannot enter pytest's (mode 0700)
    root = Path(tempfile.mkdtemp(prefix="mtlflow-pg-", dir=SYSTEM_TMP))
    data, port = root / "data", free_port()
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(root, entry.pw_uid, entry.pw_gid)
    root.chmod(0o755)
    run = {"check": True, "capture_output": True, "text": True, "timeout": 120}
    try:
        subprocess.run(
            _as_owner(["initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8"]),
            **run,
        )
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        log = str(root / "log")
        subprocess.run(
            _as_owner(["pg_ctl", "-D", str(data), "-o", options, "-l", log, "-w", "start"]), **run
        )
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                _as_owner(["pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop"]),
                check=False,
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(root, ignore_errors=True)


def create_database(server: str, name: str) -> str:
    """A new database on ``server``; returns its URL."""
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"
