"""A small async client of the admin API (docs/operations.md, "The admin API"), for the rollout and `tidegate serve`.

Every call raises AdminError with the API's own message on a 4xx/5xx answer, and on a transport
failure with what failed, so the caller can say why it stopped.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from tidegate.rollout.pool_view import PoolView, parse_pools


class AdminError(RuntimeError):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _path_part(value: str) -> str:
    return quote(value, safe=":")


class AdminClient:
    def __init__(self, base_url: str, token: str | None = None, timeout: float = 5.0) -> None:
        if "://" not in base_url:
            base_url = "http://" + base_url
        self.base_url = base_url.rstrip("/")
        # Tidegate-Actor: the state changes this makes are a rollout's in the admin's event list.
        headers = {"tidegate-actor": "rollout"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AdminClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            resp = await self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise AdminError(f"admin API at {self.base_url}: {method} {path}: {exc!r}") from exc
        if resp.status_code >= 400:
            try:
                message = resp.json().get("error", resp.text)
            except ValueError:
                message = resp.text.strip()
            raise AdminError(f"admin API: {method} {path}: {resp.status_code} {message}", resp.status_code)
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            return resp.text

    async def pools(self) -> dict[str, PoolView]:
        return parse_pools(await self._call("GET", "/api/pools"))

    async def pool(self, name: str) -> PoolView:
        pools = await self.pools()
        if name not in pools:
            known = ", ".join(sorted(pools)) or "none"
            raise AdminError(f"no pool {name!r} at {self.base_url} (pools: {known})", 404)
        return pools[name]

    def _instance(self, pool: str, address: str) -> str:
        return f"/api/pools/{_path_part(pool)}/instances/{_path_part(address)}"

    async def add_instance(
        self, pool: str, address: str, weight: int = 1, meta: dict[str, str] | None = None
    ) -> Any:
        body: dict[str, Any] = {"address": address, "weight": weight}
        if meta:
            body["meta"] = meta
        return await self._call("POST", f"/api/pools/{_path_part(pool)}/instances", body)

    async def remove_instance(self, pool: str, address: str) -> Any:
        return await self._call("DELETE", self._instance(pool, address))

    async def set_state(self, pool: str, address: str, action: str) -> Any:
        """action: drain | enable | maint."""
        return await self._call("POST", self._instance(pool, address) + "/" + action)

    async def set_weight(self, pool: str, address: str, weight: int) -> Any:
        return await self._call("PUT", self._instance(pool, address) + "/weight", {"weight": weight})
