"""`tidegate serve --register`: add the supervised instances to a gateway's pool, and on exit take
them out the graceful way (drain, wait for in-flight to reach 0, then remove)."""

from __future__ import annotations

import asyncio
import time

from tidegate.rollout.admin_client import AdminClient, AdminError


async def register(admin: AdminClient, pool: str, address: str, weight: int, meta: dict[str, str]) -> str:
    """Add the instance; if the pool already has that address (a static config entry, or a
    supervisor that was restarted), replace it so its meta points at this supervisor."""
    try:
        await admin.add_instance(pool, address, weight, meta)
        return f"registered {address} in pool {pool!r}"
    except AdminError as exc:
        if exc.status != 409:
            raise
    await admin.remove_instance(pool, address)
    deadline = time.monotonic() + 10.0
    while True:  # removal drains first, so the address may take a moment to be free again
        try:
            await admin.add_instance(pool, address, weight, meta)
            return f"re-registered {address} in pool {pool!r} (it was there already)"
        except AdminError as exc:
            if exc.status != 409 or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.1)


async def deregister(admin: AdminClient, pool: str, address: str, timeout: float) -> str:
    """Drain at the gateway, wait until no request is in flight there (up to `timeout`), remove."""
    started = time.monotonic()
    await admin.set_state(pool, address, "drain")
    left = -1
    while time.monotonic() - started < timeout:
        view = (await admin.pool(pool)).get(address)
        if view is None:
            return f"{address} was already gone from pool {pool!r}"
        left = view.connections
        if left == 0:
            break
        await asyncio.sleep(0.1)
    await admin.remove_instance(pool, address)
    waited = time.monotonic() - started
    if left > 0:
        return (
            f"removed {address} from pool {pool!r} with {left} requests still in flight after {waited:.1f} s"
        )
    return f"drained and removed {address} from pool {pool!r} ({waited:.1f} s)"
