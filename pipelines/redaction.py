"""Secrets never reach a log, an MLflow param or tag, or a report: credentials inside URLs
(``postgresql://bob:s3cret@host/db``, ``https://user:token@server``) and secret-looking query
values (``?password=...``, ``&token=...``) are masked wherever mtlflow prints or records a
value that may hold one (tracking URIs, study storage URLs, error messages)."""

from __future__ import annotations

import re
from typing import Any

MASK = "***"

# scheme://user:password@  ->  scheme://user:***@   (a user alone, no password, stays)
_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@]*:)(?P<secret>[^\s/]+)@")
# ?password=...&token=... (also api_key, apikey, secret, passwd, pwd, access_key)
_QUERY = re.compile(
    r"(?P<head>[?&;](?:password|passwd|pwd|secret|token|api_?key|access_?key)=)(?P<secret>[^&;#\s'\"]+)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with every URL credential replaced by ``***``."""
    text = _USERINFO.sub(lambda m: f"{m['head']}{MASK}@", text)
    return _QUERY.sub(lambda m: f"{m['head']}{MASK}", text)


def redact_values(data: Any) -> Any:
    """A copy of nested mappings/lists with every string ``redact``-ed."""
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, dict):
        return {key: redact_values(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return type(data)(redact_values(value) for value in data)
    return data
