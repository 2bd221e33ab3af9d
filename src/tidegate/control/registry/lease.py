"""Keys kept alive under one etcd lease for as long as their owner runs.

The owner (a `tidegate serve --register etcd://…` supervisor, or a tidegate process announcing
itself) grants a lease of `ttl` seconds, puts its keys under it and renews it every third of the
TTL. If the owner dies, etcd deletes the keys when the TTL runs out: nobody has to clean up after
a SIGKILL. If the lease is lost while the owner lives (etcd unreachable for longer than the TTL,
or a new etcd without the old data), a new lease is granted and the keys are put again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping

from tidegate.control.registry.etcd_client import EtcdClient, EtcdError

MAX_BACKOFF = 2.0  # seconds between attempts while etcd does not answer


class LeasedKeys:
    def __init__(
        self,
        client: EtcdClient,
        ttl: int,
        keys: Mapping[str, bytes],
        note: Callable[[str], None] = lambda _: None,
        on_trouble: Callable[[], None] = lambda: None,
    ) -> None:
        self.client = client
        self.ttl = ttl
        self.keys = dict(keys)
        self.note = note  # hears "granted LEASE", "lost …": the owner logs them its way
        self.on_trouble = on_trouble  # called when a renewal fails (etcd is not answering)
        self.lease = 0
        self.alive = asyncio.Event()  # set while the keys are in etcd under a live lease
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="etcd-lease")

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                lease = await self.client.grant(self.ttl)
                for key, value in self.keys.items():
                    await self.client.put(key, value, lease)
                self.lease = lease
                self.alive.set()
                self.note(f"granted lease {lease:x} ({self.ttl} s) for {len(self.keys)} keys")
                backoff = 0.1
                while True:
                    await asyncio.sleep(self.ttl / 3)
                    if await self.client.keepalive(lease) == 0:
                        self.note(f"lease {lease:x} was lost; putting the keys again")
                        break
            except EtcdError as exc:
                if self.alive.is_set():
                    self.note(f"cannot keep lease {self.lease:x} alive ({exc}); retrying")
                    self.on_trouble()
                self.alive.clear()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF, self.ttl / 3)
            else:
                self.alive.clear()

    async def close(self, timeout: float = 2.0) -> bool:
        """Stop renewing and revoke the lease (its keys go at once); False if etcd did not answer."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if not self.alive.is_set():
            return False
        self.alive.clear()
        try:
            await asyncio.wait_for(self.client.revoke(self.lease), timeout)
        except (EtcdError, TimeoutError):
            return False
        return True
