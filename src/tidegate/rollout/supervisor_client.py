"""The rollout's side of a supervisor's control endpoint (instance/supervisor_api.py)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx


class SupervisorError(RuntimeError):
    pass


async def _call(method: str, url: str, timeout: float) -> Any:
    try:
        async with httpx.AsyncClient(timeout=timeout) as http:
            resp = await http.request(method, url)
    except httpx.HTTPError as exc:
        raise SupervisorError(f"supervisor: {method} {url}: {exc!r}") from exc
    try:
        body = resp.json()
    except ValueError:
        body = {"error": resp.text.strip()}
    if resp.status_code >= 400:
        raise SupervisorError(f"supervisor: {method} {url}: {resp.status_code} {body.get('error', body)}")
    return body


async def restart(supervisor: str, address: str, timeout: float = 5.0) -> int:
    """Ask for a restart; returns the generation the new process will have."""
    body = await _call(
        "POST", f"{supervisor.rstrip('/')}/instances/{quote(address, safe=':')}/restart", timeout
    )
    return int(body["generation"])


async def instance(supervisor: str, address: str, timeout: float = 5.0) -> dict[str, Any]:
    """The supervisor's view of one instance: state, generation, pid, version, crashes, last_exit."""
    for item in await _call("GET", f"{supervisor.rstrip('/')}/instances", timeout):
        if item.get("address") == address:
            return dict(item)
    raise SupervisorError(f"supervisor at {supervisor} does not run {address}")
