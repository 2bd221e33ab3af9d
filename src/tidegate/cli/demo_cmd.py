"""tidegate demo [--duration S]: three drain-aware demo instances behind a gateway, with the admin
API and dashboard, all in one command.

Default ports (each can be changed; 0 picks a free one): gateway 8080, admin API and dashboard
9900, instances 9001-9003. The instances run `tidegate.instance.demo_app` under a supervisor, so
`tidegate upgrade --admin http://127.0.0.1:9900 --pool demo` rolls them one by one; the demo app
reads its version from a file in the demo's directory, so writing a new version there first makes
the upgrade visible in every answer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path

from tidegate.config import load_config
from tidegate.control.runtime.process import Runtime
from tidegate.instance.control_server import start_control_server
from tidegate.instance.supervisor import StartError, Supervisor

DEMO_APP = "tidegate.instance.demo_app:app"
POOL = "demo"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--duration", type=float, help="stop after S seconds (default: run until Ctrl-C)")
    p.add_argument("--host", default="127.0.0.1", help="address everything listens on")
    p.add_argument("--gateway-port", type=int, default=8080, help="the gateway's port (default 8080)")
    p.add_argument("--admin-port", type=int, default=9900, help="admin API and dashboard (default 9900)")
    p.add_argument("--instance-port", type=int, default=9001, help="first instance's port (default 9001)")
    p.add_argument("--instances", type=int, default=3, help=argparse.SUPPRESS)


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def config_text(host: str, gateway: int, admin: int, addresses: list[str]) -> str:
    instances = ",\n".join(f'  {{ address = "{a}" }}' for a in addresses)
    return f"""# written by `tidegate demo`
[admin]
listen = "{host}:{admin}"

[[pools]]
name = "{POOL}"
scheduler = "round-robin"
slow_start = "3s"
instances = [
{instances},
]
[pools.health]
type = "http"
path = "/healthz"
interval = "500ms"
timeout = "500ms"
rise = 2
fall = 2

[[http]]
listen = "{host}:{gateway}"
pool = "{POOL}"
"""


def run(args: argparse.Namespace) -> int:
    import uvloop

    return uvloop.run(_demo(args))


async def _demo(args: argparse.Namespace) -> int:
    host = args.host
    workdir = Path(tempfile.mkdtemp(prefix="tidegate-demo-"))
    version_file = workdir / "VERSION"
    version_file.write_text("1\n")
    env = dict(os.environ)
    env["TIDEGATE_DEMO_VERSION_FILE"] = str(version_file)
    env["TIDEGATE_PARENT_PID"] = str(os.getpid())
    first = args.instance_port
    ports = [0] * args.instances if first == 0 else [first + i for i in range(args.instances)]
    supervisor = Supervisor(DEMO_APP, host, ports, ["--drain-window", "0.5", "--grace", "10"], env=env)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    control = await start_control_server(supervisor)
    runtime: Runtime | None = None
    try:
        try:
            await supervisor.start()
        except StartError as exc:
            print(f"tidegate demo: {exc}", file=sys.stderr, flush=True)
            return 1
        gateway = args.gateway_port or free_port(host)
        admin = args.admin_port or free_port(host)
        path = workdir / "tidegate.toml"
        path.write_text(config_text(host, gateway, admin, [c.address for c in supervisor.children]))
        runtime = Runtime(load_config(str(path)), str(path), grace=5.0)
        try:
            await runtime.start()
        except OSError as exc:
            print(
                f"tidegate demo: cannot listen: {exc} (choose other ports: tidegate demo --help)",
                file=sys.stderr,
            )
            return 1
        pool = runtime.pools[POOL]
        for child in supervisor.children:  # what `tidegate serve --register` tells the admin API
            inst = pool.get(child.address)
            if inst is not None:
                inst.meta["supervisor"] = control.url
        _print_hints(host, gateway, admin, version_file, len(supervisor.children))
        print("tidegate: ready", file=sys.stderr, flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), args.duration)
        print("tidegate demo: stopping", file=sys.stderr, flush=True)
    finally:
        if runtime is not None:
            await runtime.stop()
        await supervisor.stop(timeout=15)
        await control.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _print_hints(host: str, gateway: int, admin: int, version_file: Path, count: int) -> None:
    shown = f"[{host}]" if ":" in host else host
    lines = [
        f"tidegate demo: {count} drain-aware instances behind a round-robin gateway",
        f"  gateway    http://{shown}:{gateway}/          try: curl http://{shown}:{gateway}/",
        f"  dashboard  http://{shown}:{admin}/          admin API: http://{shown}:{admin}/api/pools",
        "  rolling upgrade, from another terminal (under load if you like: "
        f"wrk -c 20 -d 30s http://{shown}:{gateway}/):",
        f"    echo 2 > {version_file} && {_prog()} upgrade --admin http://{shown}:{admin} --pool {POOL}",
        "  Ctrl-C stops everything.",
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)


def _prog() -> str:
    """How this tidegate was started (`.venv/bin/tidegate` from scripts/demo), for a copyable hint."""
    argv0 = sys.argv[0]
    return argv0 if os.path.basename(argv0) == "tidegate" else "tidegate"
