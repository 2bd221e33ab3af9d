"""A small HTTP/1.1 load generator for tests and bench scripts: keep-alive connections, GETs and
POSTs with bodies, every outcome counted and time-stamped.

Each of `connections` workers holds one keep-alive connection and sends requests back to back (a
closed-loop load). The response is parsed with httptools. Outcomes are kept per request as
(start, latency, status) with status -1 for a connection error (refused, reset, closed before a
complete response), so a caller can split them into before / during / after an event. A server
closing the connection *after* a complete response with `Connection: close` is not an error:
the worker opens a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field

import httptools

ERROR = -1


@dataclass
class Result:
    started: list[float] = field(default_factory=list)  # time.monotonic() when sent
    latency: list[float] = field(default_factory=list)  # seconds
    status: list[int] = field(default_factory=list)  # HTTP status, or ERROR
    errors: Counter[str] = field(default_factory=Counter)  # kinds of connection error
    versions: Counter[str] = field(default_factory=Counter)  # Tidegate-Version of 2xx answers
    bad_bodies: int = 0  # POST echoes whose digest did not match what was sent

    def select(self, start: float = 0.0, end: float = float("inf")) -> list[int]:
        return [i for i, t in enumerate(self.started) if start <= t < end]

    def summary(self, start: float = 0.0, end: float = float("inf")) -> dict[str, float]:
        idx = self.select(start, end)
        lat = sorted(self.latency[i] for i in idx)
        statuses = [self.status[i] for i in idx]
        span = (self.started[idx[-1]] - self.started[idx[0]]) if len(idx) > 1 else 0.0
        return {
            "requests": len(idx),
            "non_2xx": sum(1 for s in statuses if s != ERROR and not 200 <= s < 300),
            "conn_errors": sum(1 for s in statuses if s == ERROR),
            "p50_ms": 1000 * lat[len(lat) // 2] if lat else 0.0,
            "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else 0.0,
            "max_ms": 1000 * lat[-1] if lat else 0.0,
            "rps": len(idx) / span if span > 0 else 0.0,
        }

    def problems(self) -> list[str]:
        """Every non-2xx status and connection error, counted, for an assertion message."""
        bad = Counter(s for s in self.status if not 200 <= s < 300)
        out = [f"{n} x {'connection error' if s == ERROR else s}" for s, n in sorted(bad.items())]
        out += [f"{n} x {kind}" for kind, n in self.errors.items()]
        if self.bad_bodies:
            out.append(f"{self.bad_bodies} x POST echo with the wrong digest")
        return out


class _Response:
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.done = False
        self.headers: dict[bytes, bytes] = {}
        self.body = bytearray()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.done = True


class LoadGenerator:
    """`await LoadGenerator(host, port).run(until)` — or start() / stop() around something else."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        connections: int = 8,
        post_every: int = 2,  # every n-th request of a worker is a POST (0: GETs only)
        body_bytes: int = 4096,
        get_path: str = "/",
        post_path: str = "/echo",
        check_echo: bool = True,  # POST answers are JSON with "sha256" of the body received
    ) -> None:
        self.host, self.port = host, port
        self.connections = connections
        self.post_every = post_every
        self.body = bytes((i * 7 + 3) % 251 for i in range(body_bytes))
        self.digest = hashlib.sha256(self.body).hexdigest()
        self.check_echo = check_echo
        host_header = f"{host}:{port}".encode()
        self.get = b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (get_path.encode(), host_header)
        self.post = (
            b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n"
            % (post_path.encode(), host_header, len(self.body))
        ) + self.body
        self.result = Result()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.ensure_future(self._worker(i)) for i in range(self.connections)]

    async def stop(self) -> Result:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        return self.result

    async def run(self, seconds: float) -> Result:
        self.start()
        await asyncio.sleep(seconds)
        return await self.stop()

    def _record(self, started: float, status: int) -> None:
        r = self.result
        r.started.append(started)
        r.latency.append(time.monotonic() - started)
        r.status.append(status)

    async def _worker(self, index: int) -> None:
        n = index  # workers start at different points of the GET/POST mix
        writer: asyncio.StreamWriter | None = None
        reader: asyncio.StreamReader | None = None
        while not self._stop.is_set():
            n += 1
            is_post = self.post_every > 0 and n % self.post_every == 0
            started = time.monotonic()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(self.host, self.port)
                assert reader is not None
                writer.write(self.post if is_post else self.get)
                resp = _Response()
                while not resp.done:
                    chunk = await asyncio.wait_for(reader.read(65536), 30.0)
                    if not chunk:
                        raise ConnectionResetError("closed before a complete response")
                    resp.parser.feed_data(chunk)
            except (OSError, TimeoutError, httptools.HttpParserError) as exc:
                self._record(started, ERROR)
                self.result.errors[f"{type(exc).__name__}: {exc}"] += 1
                await self._close(writer)
                writer = None
                continue
            status = resp.parser.get_status_code()
            self._record(started, status)
            if 200 <= status < 300:
                version = resp.headers.get(b"tidegate-version")
                if version is not None:
                    self.result.versions[version.decode()] += 1
                if is_post and self.check_echo and not self._echo_ok(bytes(resp.body)):
                    self.result.bad_bodies += 1
            if not resp.parser.should_keep_alive():
                await self._close(writer)
                writer = None
        await self._close(writer)

    def _echo_ok(self, body: bytes) -> bool:
        try:
            return bool(json.loads(body).get("sha256") == self.digest)
        except ValueError:
            return False

    @staticmethod
    async def _close(writer: asyncio.StreamWriter | None) -> None:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return None


def main(argv: list[str] | None = None) -> int:
    """`python -m tidegate.testing.load_generator HOST:PORT --seconds S --out FILE` (for bench/):
    runs the load and writes every request's (start, latency, status) as JSON."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m tidegate.testing.load_generator")
    p.add_argument("target", metavar="HOST:PORT")
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--post-every", type=int, default=2)
    p.add_argument("--body-bytes", type=int, default=4096)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    host, _, port = a.target.rpartition(":")
    gen = LoadGenerator(
        host, int(port), connections=a.connections, post_every=a.post_every, body_bytes=a.body_bytes
    )
    import uvloop

    result = uvloop.run(gen.run(a.seconds))
    doc = {
        "started": result.started,
        "latency": result.latency,
        "status": result.status,
        "errors": dict(result.errors),
        "versions": dict(result.versions),
        "bad_bodies": result.bad_bodies,
    }
    with open(a.out, "w") as f:
        json.dump(doc, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
