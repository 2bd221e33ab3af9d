"""A thin async client of etcd v3's JSON gateway over HTTP (httpx); the formats are etcd_wire's.

Only what the registry needs: range over a prefix, put, delete, leases, and a watch stream.
Several endpoints (members of one cluster) are tried in turn; the one that answered last is
asked first. Every failure, of transport or of etcd, is an EtcdError saying which call failed.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

import httpx

from tidegate.control.registry import etcd_wire as wire

T = TypeVar("T")


class EtcdError(RuntimeError):
    """A call that failed. `maybe_applied`: the request may have reached etcd (it timed out or
    the connection broke after it was sent), so a write's outcome is unknown: etcd may apply it
    later still (a frozen member applies what it had read once it runs again). False only when
    the request is known not to have been acted on: never sent, or refused by etcd."""

    def __init__(self, message: str, maybe_applied: bool = False) -> None:
        super().__init__(message)
        self.maybe_applied = maybe_applied


# Failures before any byte of the request left: nothing can have been applied.
_UNSENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class EtcdClient:
    def __init__(self, endpoints: Sequence[str], timeout: float = 2.0) -> None:
        if not endpoints:
            raise ValueError("no etcd endpoints")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self._first = 0
        self._http = httpx.AsyncClient(timeout=timeout)

    @property
    def endpoint(self) -> str:
        return self.endpoints[self._first]

    async def aclose(self) -> None:
        await self._http.aclose()

    def _order(self) -> list[int]:
        n = len(self.endpoints)
        return [(self._first + i) % n for i in range(n)]

    async def _call(self, path: str, body: dict[str, Any]) -> Any:
        failures: list[str] = []
        maybe_applied = False
        for i in self._order():
            url = self.endpoints[i] + path
            try:
                resp = await self._http.post(url, json=body)
            except httpx.HTTPError as exc:
                maybe_applied = maybe_applied or not isinstance(exc, _UNSENT)
                failures.append(f"{url}: {exc!r}")
                continue
            try:
                doc = resp.json()
            except ValueError as exc:  # an answer, but not etcd's: a success cannot be ruled out
                maybe_applied = maybe_applied or resp.status_code < 400
                failures.append(f"{url}: {resp.status_code} {exc!r}")
                continue
            self._first = i
            if resp.status_code >= 400 or (isinstance(doc, dict) and "error" in doc):
                message = doc.get("message") or doc.get("error") if isinstance(doc, dict) else doc
                raise EtcdError(f"etcd {url}: {resp.status_code} {message}", maybe_applied)
            return doc
        what = "did not answer in time" if maybe_applied else "unreachable"
        raise EtcdError(f"etcd {what}: " + "; ".join(failures), maybe_applied)

    async def range_prefix(self, prefix: str) -> tuple[int, list[wire.KeyValue]]:
        return self._parsed(
            wire.parse_range, await self._call("/v3/kv/range", wire.range_prefix_body(prefix))
        )

    async def put(self, key: str, value: bytes, lease: int = 0) -> int:
        doc = await self._call("/v3/kv/put", wire.put_body(key, value, lease))
        return self._parsed(wire.revision_of, doc)

    async def delete(self, key: str) -> int:
        return self._parsed(wire.revision_of, await self._call("/v3/kv/deleterange", wire.delete_body(key)))

    async def grant(self, ttl: int) -> int:
        lease, _ = self._parsed(wire.parse_grant, await self._call("/v3/lease/grant", {"TTL": str(ttl)}))
        return lease

    async def keepalive(self, lease: int) -> int:
        """The TTL left; 0 when the lease is gone."""
        return self._parsed(wire.parse_keepalive, await self._call("/v3/lease/keepalive", {"ID": str(lease)}))

    async def revoke(self, lease: int) -> None:
        await self._call("/v3/lease/revoke", {"ID": str(lease)})

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[wire.WatchMessage]:
        """The watch stream from `start_revision` on, message by message, until it breaks
        (EtcdError; a compacted start revision arrives as a canceled message)."""
        url = self.endpoint + "/v3/watch"
        timeout = httpx.Timeout(self._http.timeout.connect, read=None)
        try:
            async with self._http.stream(
                "POST", url, json=wire.watch_body(prefix, start_revision), timeout=timeout
            ) as resp:
                if resp.status_code >= 400:
                    raise EtcdError(f"etcd {url}: {resp.status_code}")
                async for line in resp.aiter_lines():
                    if line.strip():
                        yield self._parsed(wire.parse_watch, json.loads(line))
        except (httpx.HTTPError, ValueError) as exc:
            self._first = (self._first + 1) % len(self.endpoints)  # try another member next
            raise EtcdError(f"etcd watch {url}: {exc!r}") from exc
        raise EtcdError(f"etcd watch {url}: the stream ended")

    @staticmethod
    def _parsed(parse: Callable[[Any], T], doc: Any) -> T:
        try:
            return parse(doc)
        except wire.WireError as exc:
            raise EtcdError(str(exc)) from exc
