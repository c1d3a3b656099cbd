"""Serving latency: the pyfunc's `predict` in process, then `mlflow models serve` over HTTP.

Run from a project after `dvc repro` (it serves `models:/<register.model_name>@<alias>` from
the project's MLflow store):

    python benchmarks/serving_latency.py                       # 1,000 requests per setting
    python benchmarks/serving_latency.py --workers 2 --threads 1 --skip-pyfunc
    python benchmarks/serving_latency.py --breakdown           # where a request's CPU goes
    python benchmarks/serving_latency.py --model models:/m-<id> --skip-pyfunc  # another model
    python benchmarks/serving_latency.py --per-image           # the network, batched, no HTTP
    python benchmarks/serving_latency.py --skip-pyfunc --workers 2 --engine torch  # A/B

``--model`` serves any logged model instead of the champion: log the same checkpoint with two
versions of the serving code (a ``git worktree`` of each on ``PYTHONPATH``) to compare them.

1. pyfunc `predict` on 1 and 64 test images (base64 PNG rows, as a client sends them):
   median and p99 latency.
2. A real `mlflow models serve` process (`--workers`; `--threads` sets OMP_NUM_THREADS, the
   torch threads of each worker; `--engine` the forward pass's engine, ONNX Runtime by
   default where the model has its export): one image per request, at concurrency 1 and 8 (threads
   sending back to back over kept-alive connections, with a client light enough to leave the
   CPU to the server): p50/p99 latency, requests/s, and the CPU time the server's processes
   (all their threads) spent per request, each beside the 1-minute load average measured
   after it (the CPU may be shared).
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from serving_soak import Case, KeepAliveClient, project_model, records

from pipelines.serving import encode_png
from pipelines.serving.process import served_model


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


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


ORDER = [
    "MLflow request handler, all",
    "MLflow: JSON -> DataFrame",
    "our predict, all",
    "decode (base64, PNG)",
    "model forward + columns (batched)",
    "MLflow: predictions -> JSON",
]


def cpu_breakdown(model_uri: str, rows: list[dict[str, str]], n: int) -> None:
    """Where a request's CPU goes: MLflow's own request handler (``invocations``, what the
    server runs in its thread pool) on 1-image JSON bodies from 1 and 8 threads in process,
    with torch on 1 thread so that each step's thread CPU time is all of its cost. The
    model's weights are its own, but its code is this checkout's (imported above, it stands
    in for the copy the model was logged with): compare code versions over HTTP or with
    ``--per-image``."""
    import json
    import sys

    from mlflow.pyfunc import scoring_server

    torch.set_num_threads(1)
    model = mlflow.pyfunc.load_model(model_uri)
    schema, python_model = model.metadata.get_input_schema(), model._model_impl.python_model
    pyfunc = sys.modules[type(python_model).__module__]  # our serving code (see above)
    python_model.as_records = True  # records, as in the scoring server (not a frame)
    bodies = [json.dumps({"dataframe_records": [row]}).encode() for row in rows]
    spent: dict[str, float] = {}

    def timed(name: str, function):
        def wrapper(*args, **kwargs):
            start = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.thread_time() - start

        return wrapper

    python_model.batcher.run = timed("model forward + columns (batched)", python_model.batcher.run)
    python_model.predict = timed("our predict, all", python_model.predict)
    steps = [(pyfunc, "request_inputs", "decode (base64, PNG)")]
    steps += [(scoring_server, "_parse_json_data", "MLflow: JSON -> DataFrame")]
    steps += [(scoring_server, "predictions_to_json", "MLflow: predictions -> JSON")]
    originals = [(module, attr, getattr(module, attr)) for module, attr, _ in steps]
    for module, attr, name in steps:
        setattr(module, attr, timed(name, getattr(module, attr)))
    handle = timed("MLflow request handler, all", scoring_server.invocations)

    def one(i: int) -> None:
        handle(bodies[i % len(bodies)], "application/json", model, schema)

    try:
        for concurrency in (1, 8):
            spent.clear()
            python_model.batcher.batches = 0
            start = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(one, range(n)))
            rate = n / (time.perf_counter() - start)
            print(
                f"\n| CPU per request, in process, concurrency {concurrency}: {rate:.0f} "
                f"requests/s, mean batch {n / python_model.batcher.batches:.1f}, load avg "
                f"{os.getloadavg()[0]:.2f} | ms |\n|---|---:|"
            )
            for name in ORDER:
                print(f"| {name} | {spent.get(name, 0.0) / n * 1e3:.2f} |")
    finally:
        for module, attr, original in originals:
            setattr(module, attr, original)


PER_IMAGE = """
import sys, time
import mlflow, numpy as np, torch
torch.set_num_threads(1)
mlflow.set_tracking_uri(sys.argv[2])
predictor = mlflow.pyfunc.load_model(sys.argv[1]).unwrap_python_model().predictor
images, repeats, cells = np.load(sys.argv[3]), int(sys.argv[4]), []
for batch in (1, 4, 8):
    inputs = {"image": images[:batch]}
    for _ in range(10):
        predictor.predict_columns(inputs)
    start = time.process_time()
    for _ in range(repeats):
        predictor.predict_columns(inputs)
    cells.append(f"{(time.process_time() - start) / repeats / batch * 1e3:.2f}")
print(f"| {' | '.join(cells)} |")
"""


def per_image(model_uri: str, uri: str, images: np.ndarray, repeats: int) -> None:
    """The model's own ``predict_columns`` (decoded images in, per-task columns out) on one
    torch thread: CPU ms per image at batch 1, 4 and 8, the batches the server forms. It runs
    in a fresh process outside the project: there the model imports the copy of our code it
    was logged with (here this checkout's, imported above, would stand in for it)."""
    import subprocess
    import sys
    import tempfile

    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = f"sqlite:///{Path.cwd() / uri.removeprefix('sqlite:///')}"  # from another folder
    with tempfile.TemporaryDirectory() as scratch:
        np.save(Path(scratch) / "images.npy", images[:8])
        args = [model_uri, uri, str(Path(scratch) / "images.npy"), str(repeats)]
        result = subprocess.run(
            [sys.executable, "-c", PER_IMAGE, *args],
            cwd=scratch,
            capture_output=True,
            text=True,
            check=True,
        )
    print("| CPU ms per image, batch 1 | 4 | 8 |\n|---:|---:|---:|")
    print(result.stdout.strip().splitlines()[-1])


def cpu_seconds(pids: set[int]) -> float:
    """User + system CPU seconds of these processes so far (all their threads, exited ones
    included), from /proc."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def load(url: str, cases: list[Case], n: int, concurrency: int) -> tuple[list[float], float]:
    """``n`` requests from ``concurrency`` threads, each on its own connection; every answer
    must be 200. Latencies and wall seconds."""
    times: list[float] = []
    lock, position = threading.Lock(), iter(range(n))

    def send() -> None:
        client = KeepAliveClient(url)
        while True:
            with lock:
                i = next(position, None)
            if i is None:
                break
            start = time.perf_counter()
            status, body = client.post("/invocations", cases[i % len(cases)])
            elapsed = time.perf_counter() - start
            if status != 200:
                raise SystemExit(f"HTTP {status}: {body[:300]!r}")
            with lock:
                times.append(elapsed)
        client.close()

    threads = [threading.Thread(target=send) for _ in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return times, time.perf_counter() - start


def http_latency(model: str, uri: str, root: Path, images: np.ndarray, args) -> None:
    cases = [
        Case(f"valid-{i}", records([{"image": encode_png(img)}])) for i, img in enumerate(images)
    ]
    env = {} if args.threads is None else {"OMP_NUM_THREADS": str(args.threads)}
    threads = f", OMP_NUM_THREADS={args.threads}" if args.threads else ""
    if args.engine:
        env["MTLFLOW_SERVE_ENGINE"] = args.engine
        threads += f", MTLFLOW_SERVE_ENGINE={args.engine}"
    with served_model(model, uri, root, workers=args.workers, env=env) as served:
        print(
            f"\n| mlflow models serve, --workers {args.workers}{threads}, 1 image/request, "
            f"{args.requests} requests | p50 ms | p99 ms | requests/s | server CPU ms/request "
            "| load avg |\n|---|---:|---:|---:|---:|---:|"
        )
        for concurrency in (1, 8):
            load(served.url, cases, 50 * concurrency, concurrency)  # warm-up
            pids = served.pids()
            spent = cpu_seconds(pids)
            times, wall = load(served.url, cases, args.requests, concurrency)
            spent = cpu_seconds(pids) - spent
            print(
                f"| concurrency {concurrency} | {percentile(times, 50) * 1e3:.1f} | "
                f"{percentile(times, 99) * 1e3:.1f} | {args.requests / wall:.0f} | "
                f"{spent / args.requests * 1e3:.2f} | {os.getloadavg()[0]:.2f} |",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=50, help="pyfunc calls per batch size")
    parser.add_argument("--workers", type=int, default=1, help="of mlflow models serve")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS of the server")
    parser.add_argument(
        "--engine", choices=["onnx", "torch"], help="MTLFLOW_SERVE_ENGINE of the server"
    )
    parser.add_argument("--skip-pyfunc", action="store_true", help="only the HTTP part")
    parser.add_argument("--breakdown", action="store_true", help="only the CPU breakdown")
    parser.add_argument("--model", help="a model URI to serve instead of the champion")
    parser.add_argument("--per-image", action="store_true", help="only CPU per image, batched")
    args = parser.parse_args()
    model, uri, images = project_model(Path.cwd())
    model = args.model or model
    images = images[:64]
    mlflow.set_tracking_uri(uri)
    print(f"{model}, {images.shape[1]}px images, torch threads here: {torch.get_num_threads()}")
    if args.breakdown:
        cpu_breakdown(model, [{"image": encode_png(img)} for img in images], args.requests)
        return
    if args.per_image:
        per_image(model, uri, images, max(args.repeats, 150))
        return
    if not args.skip_pyfunc:
        pyfunc_latency(model, [{"image": encode_png(img)} for img in images], args.repeats)
    http_latency(model, uri, Path.cwd(), images, args)


if __name__ == "__main__":
    main()
