"""The gateway's own CPU cost per proxied request, without sockets: a steady figure to compare
hot-path changes with on a machine whose load comes and goes.

The real `HttpService`, `ClientConnection`, `Exchange` and `UpstreamConnection` on a real uvloop
loop; only the transports are stand-ins. A client transport feeds the next request as soon as the
answer to the previous one is written; an upstream transport answers every request head it is
sent with the bytes an nginx instance sends. `connections` clients run at once, as under wrk, so
the loop sees the same interleaving. The passive-health hook is installed as the health service
installs it. What this leaves out is the kernel: recv/send and epoll (see `tidegate bench`).

    python -m tidegate.bench.gateway_cpu [--requests 200000] [--connections 50] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
from typing import Any

from tidegate.balancing.instance import Instance
from tidegate.config.model import Config, OutlierConfig
from tidegate.control.runtime.pools import build_pools
from tidegate.health.outlier import OutlierDetector
from tidegate.http.client import ClientConnection
from tidegate.http.service import HttpService
from tidegate.http.upstream import UpstreamConnection
from tidegate.service import StandaloneHost

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Tue, 01 Jul 2025 12:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 23\r\nConnection: keep-alive\r\n\r\n"
    b"hello from the backend\n"
)


class _Transport:
    """Just what the gateway calls on a transport."""

    def __init__(self, on_write: Any) -> None:
        self.on_write = on_write
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def write(self, data: bytes) -> None:
        self.on_write(data)

    def writelines(self, parts: Any) -> None:
        self.on_write(b"".join(parts))

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            raise RuntimeError("the gateway closed a connection during the benchmark")

    abort = close


def _config() -> Config:
    return Config.model_validate(
        {
            "pools": [
                {
                    "name": "bench",
                    "instances": [{"address": "127.0.0.1:9001"}, {"address": "127.0.0.1:9002"}],
                    "health": {"type": "http", "interval": "1s"},
                }
            ],
            "http": [{"listen": "127.0.0.1:0", "pool": "bench"}],
        }
    )


async def measure(requests: int, connections: int) -> float:
    """CPU seconds per proxied request (process time, so other tenants of the machine do not count)."""
    loop = asyncio.get_running_loop()
    cfg = _config()
    runtime = StandaloneHost(cfg, build_pools(cfg))
    pool = runtime.pools["bench"]
    detector = OutlierDetector(OutlierConfig())

    def on_result(inst: Instance, ok: bool) -> None:  # as the health service's hook
        if ok:
            detector.success(inst)
        else:
            detector.failure(inst, loop.time(), list(pool))

    pool.on_result = on_result
    svc = HttpService(cfg.http[0], runtime)
    await svc.start()
    svc.gate.close()  # no listener: the requests come through the fake transports
    svc._sweeper.cancel()  # type: ignore[union-attr]  # idle upstreams would be closed after 4 s
    # Idle keep-alive connections to both instances, answering like nginx.
    for inst in pool:
        for _ in range(connections):
            up = UpstreamConnection(svc.upstreams, inst)

            def answer(data: bytes, up: UpstreamConnection = up) -> None:
                if data.endswith(b"\r\n\r\n"):
                    loop.call_soon(up.data_received, RESPONSE)

            up.connection_made(_Transport(answer))  # type: ignore[arg-type]
            svc.upstreams.release(up)
    left = requests
    done = loop.create_future()

    def client() -> None:
        conn = ClientConnection(svc)

        def answered(data: bytes) -> None:
            nonlocal left
            left -= 1
            if left > 0:
                loop.call_soon(conn.data_received, REQUEST)
            elif left == 0:
                done.set_result(None)

        conn.connection_made(_Transport(answered))  # type: ignore[arg-type]
        conn.data_received(REQUEST)

    t0 = time.process_time()
    for _ in range(connections):
        client()
    await done
    elapsed = time.process_time() - t0
    for _ in range(10):  # the last exchanges' bookkeeping after their answers were written
        await asyncio.sleep(0)
    total = sum(i.counters.completed for i in pool)
    if total < requests:
        raise RuntimeError(f"only {total} of {requests} requests completed")
    return elapsed / requests


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tidegate.bench.gateway_cpu", description=__doc__)
    ap.add_argument("--requests", type=int, default=200_000)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=5, help="runs; the best is shown (default 5)")
    ap.add_argument("--profile", action="store_true", help="cProfile one run, top functions by own time")
    args = ap.parse_args(argv)
    import uvloop

    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        uvloop.run(measure(args.requests, args.connections))
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
        return 0
    runs = [uvloop.run(measure(args.requests, args.connections)) for _ in range(args.repeat)]
    runs_us = ", ".join(f"{r * 1e6:.2f}" for r in runs)
    print(f"gateway CPU per request: best {min(runs) * 1e6:.2f} us (runs: {runs_us})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
