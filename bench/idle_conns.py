"""bench/idle: many idle keep-alive clients and slowloris clients, while normal clients go on.

Per system (tidegate one process, nginx `worker_processes 1`, HAProxy `nbthread 1`, each with the
same header timeout and connection caps above the load), one after the other in one run:

1. a few normal clients start sending requests on their kept-alive connections, and go on for
   the whole run (one every 10 ms each): every one must be answered 200;
2. IDLE clients connect, each sends one request, reads its answer and stays connected, silent;
   the server's RSS (VmRSS from /proc; for nginx its worker, for HAProxy its one process) before
   and after gives the memory one idle kept-alive connection holds;
3. SLOWLORIS clients connect and send a request head one byte every few seconds, never finishing
   it: the server should close each at its header timeout (when, from the client's connect, is
   reported), and keep serving the others meanwhile.

The instance behind all three is nginx with one worker. All traffic is on 127.0.0.1; the client
raises its own RLIMIT_NOFILE (soft to hard) to hold every connection.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tidegate.bench.http_systems import _user_line, start_backend
from tidegate.bench.kit import family, free_port, load_average, machine, wait_port
from tidegate.testing.process import Proc, child_env

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
SLOW_HEAD = b"GET /slow HTTP/1.1\r\nHost: bench\r\nX-Slow: " + b"a" * 4000


@dataclass
class Result:
    system: str
    idle: int = 0  # idle clients connected and answered
    idle_open_at_end: int = 0
    rss_before_kib: int = 0
    rss_idle_kib: int = 0
    slowloris: int = 0
    slow_closed: int = 0
    slow_close_s: list[float] = field(default_factory=list)  # from connect to the server's close
    slow_answers: dict[str, int] = field(default_factory=dict)  # status line seen before the close
    normal_sent: int = 0
    normal_failed: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def kib_per_idle(self) -> float:
        return (self.rss_idle_kib - self.rss_before_kib) / max(1, self.idle)


# --- the systems ---------------------------------------------------------------------------------
def start_tidegate(work: Path, backend: int, header_timeout: int, cap: int) -> tuple[Proc, int, list[int]]:
    conf = work / "tidegate.toml"
    conf.write_text(
        f"""
[[pools]]
name = "bench"
instances = [{{ address = "127.0.0.1:{backend}" }}]
[[http]]
listen = "127.0.0.1:0"
pool = "bench"
max_connections = {cap}
[http.limits]
client_header_timeout = "{header_timeout}s"
idle_timeout = "300s"
"""
    )
    proc = Proc([sys.executable, "-m", "tidegate", "run", str(conf)], env=child_env())
    proc.wait_for(r"tidegate: ready")
    return proc, proc.address("http")[1], [proc.popen.pid]


def start_nginx(work: Path, backend: int, header_timeout: int, cap: int) -> tuple[Proc, int, list[int]]:
    port = free_port()
    conf = work / "proxy-nginx.conf"
    conf.write_text(
        f"""
{_user_line()}
worker_processes 1;
worker_rlimit_nofile {min(2 * cap + 100, resource.getrlimit(resource.RLIMIT_NOFILE)[1])};
daemon off;
pid {work}/proxy-nginx.pid;
error_log stderr error;
events {{ worker_connections {cap}; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_header_timeout {header_timeout}s;
    upstream bench {{
        server 127.0.0.1:{backend};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://bench;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""
    )
    proc = Proc(["nginx", "-c", str(conf), "-p", str(work), "-e", "stderr"])
    wait_port(port, proc)
    return proc, port, family(proc.popen.pid)[1:]  # the worker (the master holds no client)


def start_haproxy(work: Path, backend: int, header_timeout: int, cap: int) -> tuple[Proc, int, list[int]]:
    port = free_port()
    conf = work / "haproxy.cfg"
    conf.write_text(
        f"""
global
    nbthread 1
    maxconn {cap}
    # it would want 2 descriptors a connection; idle clients hold one: run within the hard limit
    no strict-limits
defaults
    mode http
    maxconn {cap}
    timeout connect 2s
    timeout client 300s
    timeout server 60s
    timeout http-request {header_timeout}s
    timeout http-keep-alive 300s
frontend http_in
    bind 127.0.0.1:{port} backlog 4096
    default_backend instances
backend instances
    server i1 127.0.0.1:{backend}
"""
    )
    proc = Proc(["haproxy", "-db", "-f", str(conf)])
    wait_port(port, proc)
    return proc, port, [proc.popen.pid]


STARTERS: dict[str, Callable[[Path, int, int, int], tuple[Proc, int, list[int]]]] = {
    "tidegate": start_tidegate,
    "nginx": start_nginx,
    "haproxy": start_haproxy,
}


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


# --- the clients ---------------------------------------------------------------------------------
async def read_response(reader: asyncio.StreamReader) -> int:
    """One response's status (the body skipped by its Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def normal_client(port: int, res: Result, stop: asyncio.Event) -> None:
    reader = writer = None
    while not stop.is_set():
        try:
            if writer is None:
                reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
            assert reader is not None
            res.normal_sent += 1
            writer.write(REQUEST)
            status = await asyncio.wait_for(read_response(reader), 10)
            if status != 200:
                res.normal_failed += 1
                res.failures.append(f"normal: status {status}")
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            res.normal_failed += 1
            res.failures.append(f"normal: {exc!r}")
            if writer is not None:
                writer.close()
            reader = writer = None
        await asyncio.sleep(0.01)
    if writer is not None:
        writer.close()


async def idle_client(port: int, res: Result, held: list[asyncio.StreamWriter], gate: asyncio.Semaphore) -> None:
    async with gate:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 30)
            writer.write(REQUEST)
            status = await asyncio.wait_for(read_response(reader), 30)
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            res.failures.append(f"idle: {exc!r}")
            return
        if status == 200:
            res.idle += 1
        held.append(writer)


async def slow_client(port: int, res: Result, every: float, limit: float) -> None:
    t0 = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 30)
    except (OSError, TimeoutError) as exc:
        res.failures.append(f"slowloris connect: {exc!r}")
        return
    t0 = time.monotonic()

    async def trickle() -> None:
        for i in range(len(SLOW_HEAD)):
            writer.write(SLOW_HEAD[i : i + 1])
            await asyncio.sleep(every)

    sender = asyncio.get_running_loop().create_task(trickle())
    try:
        got = await asyncio.wait_for(reader.read(65536), limit)
        res.slow_closed += 1
        res.slow_close_s.append(time.monotonic() - t0)
        line = got.split(b"\r\n", 1)[0].decode(errors="replace") if got else "(closed, no answer)"
        if got:  # an answer (408) then the close
            while await asyncio.wait_for(reader.read(65536), 5):
                pass
        res.slow_answers[line] = res.slow_answers.get(line, 0) + 1
    except ConnectionError:
        res.slow_closed += 1
        res.slow_close_s.append(time.monotonic() - t0)
        res.slow_answers["(reset)"] = res.slow_answers.get("(reset)", 0) + 1
    except TimeoutError:
        pass  # still open at the limit: not closed by the server
    finally:
        sender.cancel()
        writer.close()


async def drive(name: str, port: int, pids: list[int], args: argparse.Namespace) -> Result:
    res = Result(name, slowloris=args.slowloris)
    # a few requests first: the instance connection and what the server allocates once, warm
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(50):
        writer.write(REQUEST)
        await read_response(reader)
    writer.close()
    await asyncio.sleep(0.5)
    res.rss_before_kib = rss_kib(pids)
    stop = asyncio.Event()
    normals = [asyncio.get_running_loop().create_task(normal_client(port, res, stop)) for _ in range(args.normal)]
    held: list[asyncio.StreamWriter] = []
    gate = asyncio.Semaphore(200)
    await asyncio.gather(*(idle_client(port, res, held, gate) for _ in range(args.idle)))
    await asyncio.sleep(1.0)  # let the server settle what it allocated lazily
    res.rss_idle_kib = rss_kib(pids)
    limit = args.header_timeout * 3 + 10
    await asyncio.gather(*(slow_client(port, res, args.trickle, limit) for _ in range(args.slowloris)))
    stop.set()
    await asyncio.gather(*normals)
    res.idle_open_at_end = sum(1 for w in held if not w.is_closing() and not w.transport.is_closing())
    for w in held:
        w.close()
    return res


def run_system(name: str, backend: int, work: Path, args: argparse.Namespace) -> Result:
    proc, port, pids = STARTERS[name](work, backend, args.header_timeout, args.cap)
    try:
        import uvloop

        return uvloop.run(drive(name, port, pids, args))
    finally:
        proc.stop()


# --- report --------------------------------------------------------------------------------------
def table(results: list[Result], args: argparse.Namespace) -> str:
    base = {r.system: r for r in results}
    tg = base.get("tidegate")
    lines = [
        f"{args.idle:,} idle keep-alive + {args.slowloris:,} slowloris clients (a byte every "
        f"{args.trickle:g} s), {args.normal} normal clients; header timeout {args.header_timeout} s",
        "",
        "| system | idle served | RSS before | RSS with idle | KiB / idle conn | tidegate ÷ it "
        "| slowloris closed | closed after (median, max) | answer | normal sent | failed |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: |",
    ]
    for r in results:
        ratio = (
            f"{tg.kib_per_idle / r.kib_per_idle:.2f}" if tg is not None and r.kib_per_idle > 0 else "-"
        )
        closes = (
            f"{statistics.median(r.slow_close_s):.1f} s, {max(r.slow_close_s):.1f} s" if r.slow_close_s else "-"
        )
        answers = ", ".join(f"{k} x{v}" for k, v in sorted(r.slow_answers.items()))
        lines.append(
            f"| {r.system} | {r.idle:,} | {r.rss_before_kib / 1024:.1f} MiB | {r.rss_idle_kib / 1024:.1f} MiB "
            f"| {r.kib_per_idle:.2f} | {ratio} | {r.slow_closed:,} / {r.slowloris:,} | {closes} | {answers} "
            f"| {r.normal_sent:,} | {r.normal_failed:,} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/idle", description=__doc__.split("\n\n")[0])
    ap.add_argument("--idle", type=int, default=10_000)
    ap.add_argument("--slowloris", type=int, default=1_000)
    ap.add_argument("--normal", type=int, default=4)
    ap.add_argument("--header-timeout", type=int, default=10, help="seconds, on every system")
    ap.add_argument("--trickle", type=float, default=3.0, help="seconds between a slowloris client's bytes")
    ap.add_argument("--systems", default="tidegate,nginx,haproxy")
    ap.add_argument("--json", action="store_true", help="the results as JSON lines, then the table")
    args = ap.parse_args(argv)
    args.cap = args.idle + args.slowloris + args.normal + 500
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.idle + args.slowloris + args.normal + 100
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < need:
        print(f"bench/idle: needs {need} open files, the hard limit is {hard}", file=sys.stderr)
        return 2
    print(f"{machine()}; load average before: {load_average()}")
    results = []
    with tempfile.TemporaryDirectory(prefix="tidegate-idle-") as tmp:
        work = Path(tmp)
        (work / "www").mkdir()
        backend = start_backend(work, "instance", None)
        try:
            for name in args.systems.split(","):
                res = run_system(name, backend.port, work, args)
                results.append(res)
                if args.json:
                    print(json.dumps({**asdict(res), "kib_per_idle": res.kib_per_idle, "failures": res.failures[:5]}))
        finally:
            assert backend.proc is not None
            backend.proc.stop()
    print(table(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
