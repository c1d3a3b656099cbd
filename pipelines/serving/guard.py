"""The HTTP edge of `mlflow models serve`: a request-body limit, a bound on the request bytes
held at once, error bodies of one line (no stack trace, no server path, no echo of the
request), and TCP_NODELAY on the connections of ``--workers N`` (see
``_no_delay_on_listening_sockets``).

Why here, and why this way: MLflow 3.17's scoring server has no setting for any of these (its
Docker image puts nginx with ``client_max_body_size`` in front; `mlflow models serve` runs bare
uvicorn, which has no body limit), and it writes the stack trace and the parsed request into
error bodies. The only code of ours that runs inside the server process is the model's own
loading (``entry.py``), which happens while ``mlflow.pyfunc.scoring_server.app`` builds the
app: ``install()`` then swaps the decorator that ``scoring_server.init`` wraps its
/invocations handler in (``_async_catch_mlflow_exception``, looked up when ``init`` builds the
route, after the model has loaded). That one name is the whole hook. If a later MLflow drops
it, ``install`` logs a warning and the server runs without these guards; the row and pixel
limits are checked inside the model and still hold.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from pipelines.serving.requests import max_rows

__all__ = ["RequestRefused", "install", "max_body_bytes", "max_inflight_bytes", "public_message"]

ROW_BYTES = 32 * 1024  # generous for one row: a 64 px RGB PNG in base64 is at most ~16.5 KiB
MESSAGE_CHARS = 300  # an error message is cut here: it can never carry a request back whole
_logger = logging.getLogger(__name__)


def max_body_bytes() -> int:
    """Bytes of one request body (``MTLFLOW_SERVE_MAX_BODY_BYTES``); by default the row limit
    times ``ROW_BYTES`` (32 MiB for 1024 rows, which also lets one large photo through)."""
    return int(os.environ.get("MTLFLOW_SERVE_MAX_BODY_BYTES", max_rows() * ROW_BYTES))


def max_inflight_bytes() -> int:
    """Request bytes one server process holds at once (``MTLFLOW_SERVE_MAX_INFLIGHT_BYTES``,
    default twice the body limit; at least one body). Requests past it wait for their turn,
    unread: their bytes stay in the socket, so memory stays bounded however many clients
    send at once."""
    limit = max_body_bytes()
    return max(limit, int(os.environ.get("MTLFLOW_SERVE_MAX_INFLIGHT_BYTES", 2 * limit)))


class RequestRefused(MlflowException):
    """A request the model refuses (HTTP 400). ``reason`` keeps our one-line message: MLflow
    rewrites ``message`` on the way out, prefixing the whole parsed request."""

    def __init__(self, reason: str):
        super().__init__(reason, error_code=INVALID_PARAMETER_VALUE)
        self.reason = reason


_CONVERSION = re.compile(
    r"Failed to convert column (?P<column>.+?) to type '(?P<type>[^']+)'\.\s*$"
)
_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[/\\][\w.@+-]+){2,}[/\\]?")


def public_message(exc: MlflowException) -> str:
    """One line for the client: our own reason where the model refused the request, else the
    innermost reason MLflow gives, with file paths masked and cut to ``MESSAGE_CHARS``."""
    reason = getattr(exc, "reason", None)
    cause = exc.__cause__
    if reason is None and isinstance(cause, json.JSONDecodeError):
        reason = f"request body is not valid JSON: {cause.msg} (line {cause.lineno}, "
        reason += f"column {cause.colno})"
    elif reason is None and isinstance(cause, UnicodeDecodeError):
        reason = f"request body is not UTF-8 (byte {cause.start}: {cause.reason})"
    elif reason is None:
        # MLflow nests "Failed to predict data '<the request>'. Error: ... Error: <reason>"
        head, _, last = exc.message.rpartition("Error: ")
        reason = last.strip().strip("'")
        # a value the signature cannot take: the column is named just before the reason
        column = _CONVERSION.search(head)
        if column:
            reason = f"column {column['column']}: expected {column['type']}, {reason}"
    line = " ".join(_PATH.sub("<path>", str(reason)).split())
    return line if len(line) <= MESSAGE_CHARS else line[: MESSAGE_CHARS - 3] + "..."


class ByteBudget:
    """Bytes held by requests in flight in one event loop; ``hold`` waits for room."""

    def __init__(self, capacity: int):
        self.capacity, self.used = capacity, 0
        self._room = asyncio.Condition()

    @asynccontextmanager
    async def hold(self, size: int) -> AsyncIterator[None]:
        size = min(size, self.capacity)
        async with self._room:
            await self._room.wait_for(lambda: self.used + size <= self.capacity)
            self.used += size
        try:
            yield
        finally:
            async with self._room:
                self.used -= size
                self._room.notify_all()


Handler = Callable[..., Awaitable[Any]]


def guarded(handler: Handler) -> Handler:
    """Stands in for MLflow's ``_async_catch_mlflow_exception`` around /invocations: refuses a
    body over ``max_body_bytes()`` with 413 before reading past the limit (uvicorn discards
    the rest), holds the body's bytes against the process's budget while the request runs,
    and answers any MlflowException with ``{"error_code", "message"}`` of one line."""
    from fastapi import Request
    from fastapi.responses import JSONResponse

    limit = max_body_bytes()
    budget = ByteBudget(max_inflight_bytes())

    def refuse(status: int, error_code: str, message: str) -> JSONResponse:
        return JSONResponse({"error_code": error_code, "message": message}, status_code=status)

    def too_large(size: str) -> JSONResponse:
        message = f"request body of {size} bytes; at most {limit} (MTLFLOW_SERVE_MAX_BODY_BYTES)"
        return refuse(
            413, "REQUEST_LIMIT_EXCEEDED", message + ": send the rows in several requests"
        )

    @functools.wraps(handler)
    async def endpoint(request: Request, *args: Any, **kwargs: Any) -> Any:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return too_large(declared)
        async with budget.hold(int(declared) if declared.isdigit() else limit):
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    return too_large(f"more than {limit}")
                chunks.append(chunk)
            body = b"".join(chunks)
            del chunks

            unread = [{"type": "http.request", "body": body, "more_body": False}]

            async def replay() -> dict[str, Any]:  # the body once, then the client's events
                return unread.pop() if unread else await request.receive()

            try:
                return await handler(Request(request.scope, replay), *args, **kwargs)
            except MlflowException as exc:
                trace = exc.json_kwargs.get("stack_trace")
                if trace and "unexpected error" in exc.message:  # a fault of ours, not the
                    _logger.warning("%s\n%s", exc.message, trace)  # client's: for the log
                return refuse(exc.get_http_status_code(), exc.error_code, public_message(exc))

    return endpoint


def _no_delay_on_listening_sockets() -> None:
    """``mlflow models serve --workers N`` (N > 1) gives each uvicorn worker a server socket
    made by ``socket.socket(family)``, whose ``proto`` is 0, and asyncio sets TCP_NODELAY only
    on connections of a socket whose ``proto`` is TCP. So Nagle's algorithm holds uvicorn's
    second write of a response (the body, after the headers) until the client's delayed ACK:
    40 ms on every request. Linux copies TCP_NODELAY from a server socket to the connections
    it accepts, so it is set here on every bound, unconnected TCP socket of the process (the
    first worker to load gets the socket before anyone has called ``listen`` on it)."""
    if not os.path.isdir("/proc/self/fd"):
        return
    for name in os.listdir("/proc/self/fd"):
        try:
            sock = socket.socket(fileno=int(name))  # detects family, type and protocol
        except (OSError, ValueError):
            continue
        try:
            tcp = sock.family in (socket.AF_INET, socket.AF_INET6)
            if tcp and sock.type == socket.SOCK_STREAM and sock.getsockname()[1] != 0:
                try:
                    sock.getpeername()  # a connection (a client of ours): leave it
                except OSError:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        finally:
            sock.detach()  # the descriptor stays open: it is uvicorn's


def in_scoring_server() -> bool:
    """Whether this process is `mlflow models serve`'s (MLflow sets ``__pyfunc_model_path__``
    for it), not a notebook or a batch job that loaded the model."""
    from mlflow.pyfunc import scoring_server

    return scoring_server._SERVER_MODEL_PATH in os.environ


def install() -> None:
    """Inside `mlflow models serve`, put ``guarded`` where the scoring server will wrap
    /invocations; elsewhere (a model loaded in a notebook, batch scoring) nothing changes."""
    from mlflow.pyfunc import scoring_server

    if not in_scoring_server():
        return
    if not hasattr(scoring_server, "_async_catch_mlflow_exception"):
        _logger.warning(
            "this MLflow's scoring server has no _async_catch_mlflow_exception: serving "
            "without the body limit and one-line errors of pipelines/serving/guard.py"
        )
        return
    scoring_server._async_catch_mlflow_exception = guarded
    _no_delay_on_listening_sockets()
