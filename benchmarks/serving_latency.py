"""Serving latency: the pyfunc's `predict` in process, then `mlflow models serve` over HTTP.

Run from a project after `dvc repro` (it serves `models:/<register.model_name>@<alias>` from
the project's MLflow store):

    python benchmarks/serving_latency.py                       # 200 requests per setting
    python benchmarks/serving_latency.py --requests 500 --workers 2

1. pyfunc `predict` on 1 and 64 test images (base64 PNG rows, as a client sends them):
   median and p99 latency.
2. A real `mlflow models serve` process (`--workers`): one image per request, at concurrency
   1 and 8 (threads sending back to back): p50/p99 latency and requests/s.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import requests
import torch

from pipelines.config import load_params
from pipelines.data.splits import load_split
from pipelines.files import ProjectPaths
from pipelines.serving import encode_png
from pipelines.tracking import tracking_uri


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pyfunc_latency(model_uri: str, rows: list[dict[str, str]], repeats: int) -> None:
    model = mlflow.pyfunc.load_model(model_uri)
    print("| pyfunc predict | median ms | p99 ms | images/s |\n|---|---:|---:|---:|")
    for batch in (1, 64):
        frame = pd.DataFrame(rows[:batch])
        model.predict(frame)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model.predict(frame)
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        print(
            f"| {batch} image{'s' if batch > 1 else ''} | {median * 1e3:.1f} | "
            f"{percentile(times, 99) * 1e3:.1f} | {batch / median:.0f} |"
        )


def http_latency(
    model: str, env: dict[str, str], root: Path, rows: list[dict[str, str]], n: int, workers: int
) -> None:
    port = free_port()
    cmd = [
        str(Path(sys.executable).parent / "mlflow"),
        *("models", "serve", "-m", model, "--env-manager", "local"),
        *("--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)),
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"mlflow models serve did not start ({' '.join(cmd)})")
            try:
                if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        print(
            f"\n| mlflow models serve, --workers {workers}, 1 image/request | p50 ms | p99 ms "
            "| requests/s |\n|---|---:|---:|---:|"
        )
        for concurrency in (1, 8):
            session = requests.Session()

            def call(i: int, session: requests.Session = session) -> float:
                body = {"dataframe_records": [rows[i % len(rows)]]}
                start = time.perf_counter()
                response = session.post(f"{url}/invocations", json=body, timeout=60)
                response.raise_for_status()
                return time.perf_counter() - start

            for i in range(10):  # warm-up
                call(i)
            start = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                times = list(pool.map(call, range(n)))
            wall = time.perf_counter() - start
            print(
                f"| concurrency {concurrency} | {percentile(times, 50) * 1e3:.1f} | "
                f"{percentile(times, 99) * 1e3:.1f} | {n / wall:.0f} |"
            )
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=50, help="pyfunc calls per batch size")
    parser.add_argument("--workers", type=int, default=1, help="of mlflow models serve")
    args = parser.parse_args()
    paths = ProjectPaths(Path.cwd())
    params = load_params(paths.root / "params.yaml")
    images = load_split(paths, "test", params.task_specs())[0]["image"]
    rows = [{"image": encode_png(img)} for img in images[:64]]
    uri = tracking_uri(params)
    mlflow.set_tracking_uri(uri)
    model = f"models:/{params.registry.model_name}@{params.registry.alias}"
    print(f"{model}, {images.shape[1]}px images, torch threads here: {torch.get_num_threads()}")
    pyfunc_latency(model, rows, args.repeats)
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    http_latency(model, env, paths.root, rows, args.requests, args.workers)


if __name__ == "__main__":
    main()
