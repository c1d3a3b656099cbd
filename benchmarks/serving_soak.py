"""Soak: thousands of mixed requests (valid, malformed, oversized) against `mlflow models serve`.

Run from a project after `dvc repro` (it serves `models:/<register.model_name>@<alias>` from
the project's MLflow store, as `serving_latency.py` does, and sends test-split images):

    python benchmarks/serving_soak.py                          # 5,000 requests, concurrency 8
    python benchmarks/serving_soak.py --requests 20000 --workers 2 --json soak.json
    python benchmarks/serving_soak.py --model models:/m-<id>  # another logged model

Reports server errors (5xx), crashes (the server or a worker gone), the RSS of the server and
its workers at start, peak and end, p50/p99 latency and requests/s of the valid requests, and
the status codes of each kind of request. Every malformed request must get a 4xx whose body is
one line naming the row or limit, without a stack trace, a server path or the request echoed.
Exits 1 on any 5xx, crash, bad refusal, or RSS growth over ``--max-growth-mb``.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import random
import re
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from pipelines.config import load_params
from pipelines.data.splits import load_split
from pipelines.files import ProjectPaths
from pipelines.serving import encode_png
from pipelines.serving.guard import max_body_bytes
from pipelines.serving.process import ServedModel, served_model
from pipelines.serving.requests import max_rows
from pipelines.tracking import tracking_uri

MB = 1 << 20


@dataclass(frozen=True)
class Case:
    """One kind of request: its body, and what a refusal of it must say (None: must pass)."""

    name: str
    body: bytes
    names: str | None = None  # a refusal's message must contain this
    content_type: str = "application/json"
    chunked: bool = False  # sent without Content-Length, in 1 MiB chunks


def records(rows: list[dict]) -> bytes:
    return json.dumps({"dataframe_records": rows}).encode()


def soak_cases(images: np.ndarray) -> list[tuple[Case, int]]:
    """The request mix, as (case, weight): valid single-image requests (two thirds for 16
    images), and one case of each way to get a request wrong that the issue lists."""
    valid = [
        Case(f"valid-{i}", records([{"image": encode_png(img)}])) for i, img in enumerate(images)
    ]
    png = base64.b64decode(encode_png(images[0]))
    bomb = io.BytesIO()
    Image.new("L", (7000, 7000)).save(bomb, format="PNG")  # 49 MP in ~50 KB
    body_limit = max_body_bytes()
    filler = b'{"dataframe_records": [{"image": "' + b"A" * body_limit + b'"}]}'
    malformed = [
        Case("pixels", records([{"image": base64.b64encode(bomb.getvalue()).decode()}]), "row 0"),
        Case("rows", records([{"image": "QUFB"}] * (max_rows() + 1)), "MTLFLOW_SERVE_MAX_ROWS"),
        Case("body", filler, "MTLFLOW_SERVE_MAX_BODY_BYTES"),
        Case("body-chunked", filler, "MTLFLOW_SERVE_MAX_BODY_BYTES", chunked=True),
        Case("non-json", b"SOAK-NOT-JSON " * 2000, "not valid JSON"),
        Case("columns", records([{"picture": encode_png(images[0])}]), "image"),
        Case("base64", records([{"image": encode_png(images[0])[:-3]}]), "row 0"),
        Case("png", records([{"image": base64.b64encode(png[: len(png) // 2]).decode()}]), "row 0"),
    ]
    return [(case, 1) for case in valid] + [(case, max(1, len(valid) // 16)) for case in malformed]


def project_model(root: Path) -> tuple[str, str, np.ndarray]:
    """The project's registered model URI, its tracking URI, and its test-split images."""
    paths = ProjectPaths(root)
    params = load_params(paths.root / "params.yaml")
    (images,) = load_split(paths, "test", params.task_specs())[0].values()
    uri = tracking_uri(params)
    return f"models:/{params.registry.model_name}@{params.registry.alias}", uri, images


class KeepAliveClient:
    """HTTP/1.1 over one kept-alive socket, reconnecting when the server closes it: cheap
    enough (tens of microseconds a request) to leave the CPU to the server it measures."""

    def __init__(self, url: str):
        host, port = url.removeprefix("http://").split(":")
        self.address, self.sock, self.buffer = (host, int(port)), None, b""

    def post(self, path: str, case: Case) -> tuple[int, bytes]:
        if self.sock is None:
            self.sock = socket.create_connection(self.address, timeout=120)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.buffer = b""
        head = f"POST {path} HTTP/1.1\r\nHost: soak\r\nContent-Type: {case.content_type}\r\n"
        try:
            if case.chunked:
                self.sock.sendall(f"{head}Transfer-Encoding: chunked\r\n\r\n".encode())
                for start in range(0, len(case.body), MB):
                    chunk = case.body[start : start + MB]
                    self.sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.sock.sendall(b"0\r\n\r\n")
            else:
                self.sock.sendall(f"{head}Content-Length: {len(case.body)}\r\n\r\n".encode())
                self.sock.sendall(case.body)
            return self._response()
        except OSError:
            self.close()
            raise

    def _response(self) -> tuple[int, bytes]:
        while b"\r\n\r\n" not in self.buffer:
            self._read()
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        length = int(headers.get("content-length", 0))
        while len(rest) < length:
            self.buffer = rest
            self._read()
            rest = self.buffer
        self.buffer = rest[length:]
        if headers.get("connection") == "close":
            self.close()
        return int(lines[0].split()[1]), rest[:length]

    def _read(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionResetError("server closed the connection")
        self.buffer += data

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


_PATH = re.compile(r"(/[\w.-]+){2,}|site-packages|Traceback")


def refusal_problem(case: Case, status: int, body: bytes) -> str | None:
    """Why a refusal breaks the rules (None if it keeps them)."""
    if not 400 <= status < 500:
        return f"status {status}"
    try:
        message = json.loads(body)["message"]
    except (ValueError, KeyError, TypeError):
        return f"body is not JSON with a message: {body[:120]!r}"
    if "\n" in message or len(message) > 300:
        return f"message is not one short line: {message[:120]!r}"
    if _PATH.search(message):
        return f"message shows a trace or a path: {message[:200]!r}"
    if case.names is not None and case.names not in message:
        return f"message does not name {case.names!r}: {message[:200]!r}"
    if len(case.body) > 64 and case.body[20:84].decode(errors="ignore") in message:
        return f"message echoes the request: {message[:120]!r}"
    return None


@dataclass
class SoakResult:
    requests: int
    seconds: float
    statuses: dict[str, Counter] = field(default_factory=dict)
    valid_latencies: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    rss_mb: dict[str, float] = field(default_factory=dict)
    crashed: bool = False

    @property
    def server_errors(self) -> int:
        return sum(n for c in self.statuses.values() for s, n in c.items() if s.startswith("5"))

    def summary(self) -> dict:
        valid = self.valid_latencies
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 1),
            "server_errors_5xx": self.server_errors,
            "crashes": int(self.crashed),
            "rss_mb": self.rss_mb,
            "valid": {
                "count": len(valid),
                "p50_ms": round(float(np.percentile(valid, 50)) * 1e3, 1) if valid else None,
                "p99_ms": round(float(np.percentile(valid, 99)) * 1e3, 1) if valid else None,
                "requests_per_s": round(len(valid) / self.seconds, 1),
            },
            "statuses": {
                name: dict(sorted(c.items())) for name, c in sorted(self.statuses.items())
            },
            "problems": self.problems[:20],
        }


def run_soak(
    served: ServedModel, cases: list[tuple[Case, int]], n: int, concurrency: int, seed: int = 0
) -> SoakResult:
    """Send ``n`` requests drawn from ``cases`` (by weight) from ``concurrency`` threads,
    sampling the server's RSS every 0.1 s; RSS at start, peak and after 2 s of rest."""
    rng = random.Random(seed)
    plan = rng.choices([c for c, _ in cases], weights=[w for _, w in cases], k=n)
    result, lock, position = SoakResult(n, 0.0), threading.Lock(), iter(range(n))
    pids, start_rss, peak = served.pids(), served.rss(), [served.rss()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            peak[0] = max(peak[0], served.rss())

    def send() -> None:
        client = KeepAliveClient(served.url)
        while True:
            with lock:
                i = next(position, None)
            if i is None:
                break
            case, began = plan[i], time.perf_counter()
            kind = "valid" if case.names is None else case.name
            try:
                status, body = client.post("/invocations", case)
                problem = None if case.names is None else refusal_problem(case, status, body)
                if case.names is None and status != 200:
                    problem = f"status {status}: {body[:200]!r}"
                code = str(status)
            except OSError as exc:
                code, problem = "no response", f"{type(exc).__name__}: {exc}"
            elapsed = time.perf_counter() - began
            with lock:
                result.statuses.setdefault(kind, Counter())[code] += 1
                if case.names is None and code == "200":
                    result.valid_latencies.append(elapsed)
                if problem is not None:
                    result.problems.append(f"{case.name}: {problem}")
        client.close()

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    began = time.perf_counter()
    threads = [threading.Thread(target=send) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - began
    time.sleep(2)
    done.set()
    sampler.join()
    end_rss = served.rss()
    result.crashed = not served.alive() or served.pids() != pids
    result.rss_mb = {
        "start": round(start_rss / MB),
        "peak": round(max(peak[0], end_rss) / MB),
        "end": round(end_rss / MB),
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1, help="of mlflow models serve")
    parser.add_argument("--max-growth-mb", type=float, default=300, help="end RSS over start")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    parser.add_argument("--model", help="a model URI to serve instead of the champion")
    args = parser.parse_args()
    model, uri, images = project_model(Path.cwd())
    model = args.model or model
    cases = soak_cases(images[:16])
    print(f"{model}: {args.requests} requests at concurrency {args.concurrency}", flush=True)
    with served_model(model, uri, Path.cwd(), workers=args.workers) as served:
        warm = KeepAliveClient(served.url)
        for case, _ in cases[:16]:
            warm.post("/invocations", case)
        warm.close()
        summary = run_soak(served, cases, args.requests, args.concurrency).summary()
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    rss = summary["rss_mb"]
    failed = summary["server_errors_5xx"] or summary["crashes"] or summary["problems"]
    if failed or rss["end"] - rss["start"] > args.max_growth_mb:
        sys.exit(1)


if __name__ == "__main__":
    main()
