"""The `[[tcp]]` proxy's own CPU cost per connection and per relayed message: a steady figure to
compare accept/connect/relay changes with on a machine whose load comes and goes.

The real `TcpService` on a real uvloop loop with real sockets on 127.0.0.1; the instance and
the load generator run in child processes, so what this process spends is the proxy's alone
(its Python, uvloop/libuv and libc; the kernel's side of the system calls is not counted).
The passive-health hook is installed as the health service installs it.

- connections: each client connection sends one request line, the instance answers one line
  and closes (as an HTTP server does with `Connection: close`), the client closes on EOF:
  accept, pick, connect, two relayed chunks, a half-close each way, the ends.
- messages: `--concurrency` kept connections, each sending a request and waiting for the answer
  (redis-benchmark without pipelining): two relayed chunks per message.

Process time is noisy on a shared box; instruction counts are not. `--callgrind` runs this
module under valgrind twice, with the load and with twice the load, and prints the difference
per connection and per message (start-up and shutdown cancel out):

    python -m tidegate.bench.tcp_cpu [--connections 20000] [--messages 100000] [--callgrind]

The roles `--role instance` and `--role load --port P` are the child processes; the load role
can be pointed at any proxy (HAProxy, nginx) to count its instructions the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REQUEST = b"GET /small HTTP/1.1\r\nHost: bench\r\n\r\n"  # 35 bytes, one chunk
ANSWER = b"+PONG\r\n"


# --- the child processes ----------------------------------------------------------------------
class _InstanceSide(asyncio.Protocol):
    """Answers each request chunk; in `close` mode closes after the first answer."""

    def __init__(self, close: bool) -> None:
        self.close_after = close
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(ANSWER)
        if self.close_after:
            self.transport.close()

    def eof_received(self) -> bool:
        return False


async def _instance(port_file: str) -> None:
    loop = asyncio.get_running_loop()
    # Two ports: one closes after answering (connections), one keeps the connection (messages).
    closing = await loop.create_server(lambda: _InstanceSide(True), "127.0.0.1", 0, backlog=4096)
    keeping = await loop.create_server(lambda: _InstanceSide(False), "127.0.0.1", 0, backlog=4096)
    ports = [s.getsockname()[1] for srv in (closing, keeping) for s in srv.sockets]
    Path(port_file).write_text(f"{ports[0]} {ports[1]}\n")
    await asyncio.Event().wait()


async def _one_connection(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(REQUEST)
    answer = await reader.read()  # to EOF: the instance closed, the proxy passed the FIN on
    if answer != ANSWER:
        raise RuntimeError(f"unexpected answer {answer!r}")
    writer.close()
    await writer.wait_closed()


async def _connections(port: int, total: int, concurrency: int) -> None:
    left = total

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await _one_connection(port)

    await asyncio.gather(*(client() for _ in range(concurrency)))


async def _messages(port: int, total: int, concurrency: int) -> None:
    async def client(n: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(n):
            writer.write(REQUEST)
            if await reader.readexactly(len(ANSWER)) != ANSWER:
                raise RuntimeError("unexpected answer")
        writer.close()
        await writer.wait_closed()

    each, extra = divmod(total, concurrency)
    await asyncio.gather(*(client(each + (i < extra)) for i in range(concurrency)))


def _load(port: int, connections: int, messages: int, concurrency: int) -> None:
    import uvloop

    async def run() -> None:
        if connections:
            await _connections(port, connections, concurrency)
        if messages:
            await _messages(port, messages, concurrency)

    uvloop.run(run())


# --- the proxy under measurement --------------------------------------------------------------
def _config(instance: int, messages_instance: int) -> object:
    from tidegate.config.model import Config

    return Config.model_validate(
        {
            "pools": [
                {"name": "conns", "instances": [{"address": f"127.0.0.1:{instance}"}]},
                {"name": "msgs", "instances": [{"address": f"127.0.0.1:{messages_instance}"}]},
            ],
            "tcp": [
                {"listen": "127.0.0.1:0", "pool": "conns"},
                {"listen": "127.0.0.1:0", "pool": "msgs"},
            ],
        }
    )


async def _proxy(args: argparse.Namespace, instance: int, messages_instance: int) -> dict[str, float]:
    """CPU seconds this process spent on the connections and on the messages."""
    from tidegate.balancing.instance import Instance
    from tidegate.balancing.pool import Pool
    from tidegate.config.model import Config, OutlierConfig
    from tidegate.control.runtime.pools import build_pools
    from tidegate.health.outlier import OutlierDetector
    from tidegate.service import StandaloneHost
    from tidegate.tcp.service import TcpService

    loop = asyncio.get_running_loop()
    cfg = _config(instance, messages_instance)
    assert isinstance(cfg, Config)
    runtime = StandaloneHost(cfg, build_pools(cfg))
    detector = OutlierDetector(OutlierConfig())
    for pool in runtime.pools.values():

        def on_result(inst: Instance, ok: bool, pool: Pool = pool) -> None:  # as the health service's
            if ok:
                detector.success(inst)
            else:
                detector.failure(inst, loop.time(), list(pool))

        pool.on_result = on_result
    services = [TcpService(t, runtime) for t in cfg.tcp]
    for svc in services:
        await svc.start()
    ports = [int(svc.address.rsplit(":", 1)[1]) for svc in services]
    spent = {}
    for what, port, n in (("connections", ports[0], args.connections), ("messages", ports[1], args.messages)):
        if not n:
            continue
        argv = [
            sys.executable, "-m", "tidegate.bench.tcp_cpu", "--role", "load", "--port", str(port),
            "--connections", "0", "--messages", "0", f"--{what}", str(n),
            "--concurrency", str(args.concurrency),
        ]  # fmt: skip
        t0 = time.process_time()
        load = await asyncio.create_subprocess_exec(*argv, env=_child_env())
        if await load.wait() != 0:
            raise RuntimeError("the load generator failed")
        for svc in services:
            await svc.wait_idle(10.0)
        spent[what] = time.process_time() - t0
    for svc in services:
        await svc.stop_listening()
    done = sum(i.counters.completed for pool in runtime.pools.values() for i in pool)
    if done != args.connections + (args.concurrency if args.messages else 0):
        raise RuntimeError(f"{done} connections completed")
    return spent


def _child_env() -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _measure(args: argparse.Namespace) -> dict[str, float]:
    import uvloop

    with tempfile.TemporaryDirectory(prefix="tidegate-tcp-cpu-") as tmp:
        port_file = Path(tmp) / "ports"
        argv = [
            sys.executable,
            "-m",
            "tidegate.bench.tcp_cpu",
            "--role",
            "instance",
            "--port-file",
            str(port_file),
        ]
        inst = subprocess.Popen(argv, env=_child_env())
        try:
            deadline = time.monotonic() + 30
            while not port_file.exists() or not port_file.read_text().endswith("\n"):
                if time.monotonic() > deadline or inst.poll() is not None:
                    raise RuntimeError("the instance did not start")
                time.sleep(0.02)
            closing, keeping = map(int, port_file.read_text().split())
            return uvloop.run(_proxy(args, closing, keeping))
        finally:
            inst.terminate()
            inst.wait()


# --- instruction counts -----------------------------------------------------------------------
def _instructions(args: argparse.Namespace, connections: int, messages: int) -> int:
    with tempfile.TemporaryDirectory(prefix="tidegate-callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        argv = [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
            sys.executable, "-m", "tidegate.bench.tcp_cpu", "--connections", str(connections),
            "--messages", str(messages), "--concurrency", str(args.concurrency), "--repeat", "1",
        ]  # fmt: skip
        subprocess.run(argv, check=True, env=_child_env(), capture_output=True)
        text = out.read_text(errors="replace")
        found = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.MULTILINE)
        if found is None:
            raise RuntimeError("no totals in callgrind's output")
        return int(found.group(1))


def callgrind(args: argparse.Namespace) -> None:
    c, m = args.connections, args.messages
    base = _instructions(args, c, m)
    more_conns = _instructions(args, 2 * c, m) if c else base
    more_msgs = _instructions(args, c, 2 * m) if m else base
    if c:
        print(f"instructions per connection: {(more_conns - base) / c:,.0f}  ({c} more connections)")
    if m:
        print(f"instructions per message:    {(more_msgs - base) / m:,.0f}  ({m} more messages)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tidegate.bench.tcp_cpu", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--connections", type=int, default=20_000)
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3, help="runs; the best is shown (default 3)")
    ap.add_argument("--callgrind", action="store_true", help="instruction counts (valgrind, twice the load)")
    ap.add_argument("--role", choices=("proxy", "instance", "load"), default="proxy", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help="load role: the proxy's port")
    ap.add_argument("--port-file", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.role == "instance":
        import uvloop

        uvloop.run(_instance(args.port_file))
        return 0
    if args.role == "load":
        _load(args.port, args.connections, args.messages, args.concurrency)
        return 0
    if args.callgrind:
        callgrind(args)
        return 0
    runs = [_measure(args) for _ in range(args.repeat)]
    for what, n in (("connection", args.connections), ("message", args.messages)):
        if n:
            each = [r[what + "s"] / n * 1e6 for r in runs]
            print(
                f"proxy CPU per {what}: best {min(each):.2f} us (runs: {', '.join(f'{e:.2f}' for e in each)})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
