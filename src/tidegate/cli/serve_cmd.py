"""tidegate serve MODULE:APP --instances N --port P [--register ADMIN_URL --pool NAME]

A supervisor of N drain-aware instances of an ASGI app on ports P, P+1, … (P = 0: ephemeral ports,
kept across restarts). A crashed instance is started again (with a growing delay if it keeps
crashing). The supervisor's control endpoint (loopback) restarts one instance on request: that is
how `tidegate upgrade` rolls new code out. With --register, the instances are added to the pool
through the gateway's admin API, with {"supervisor": CONTROL_URL} in their meta; on SIGTERM or
Ctrl-C they are drained there and removed before the instances themselves drain and exit.

`--register etcd://HOST:PORT/PREFIX/` registers them in the etcd registry instead, which every
tidegate process sharing that prefix watches: under a lease of `--lease` seconds, renewed while
the supervisor lives. A supervisor killed outright leaves nothing behind: its instances vanish from
every pool when the lease runs out. If etcd is unreachable, the instances serve anyway and are
registered when it answers. On SIGTERM the lease is revoked first (every gateway stops sending
at once), then the instances drain and exit (a late request gets the drain signal and is retried).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from tidegate.config.model import split_address
from tidegate.control.registry.etcd_client import EtcdClient
from tidegate.control.registry.layout import Registration, encode_registration, instance_key, parse_etcd_url
from tidegate.control.registry.lease import LeasedKeys
from tidegate.instance.control_server import start_control_server
from tidegate.instance.supervisor import StartError, Supervisor
from tidegate.rollout.admin_client import AdminClient, AdminError
from tidegate.rollout.registration import deregister, register


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("app", metavar="MODULE:APP", help="the ASGI app, e.g. myapp.main:app")
    p.add_argument("--instances", "-n", type=int, default=1, help="how many instances (default 1)")
    p.add_argument("--port", "-p", type=int, default=8000, help="port of the first instance; 0 = ephemeral")
    p.add_argument("--host", default="127.0.0.1", help="address the instances listen on")
    p.add_argument("--control-port", type=int, default=0, help="the supervisor's control port on loopback")
    p.add_argument(
        "--control-listen",
        metavar="HOST:PORT",
        help="where the supervisor's control endpoint listens instead (for `tidegate upgrade` run on "
        "another host, e.g. the LVS director's); it has no authentication: keep it on a private network",
    )
    p.add_argument(
        "--advertise",
        metavar="HOST",
        help="the address the gateway or director reaches this host by: the instances are registered "
        "as HOST:PORT and the supervisor as http://HOST:CONTROL_PORT (default: where they listen)",
    )
    p.add_argument(
        "--register",
        metavar="ADMIN_URL",
        help="add the instances to this gateway's pool, or to the etcd registry at etcd://HOST:PORT/PREFIX/",
    )
    p.add_argument("--pool", help="the pool to register them in (with --register)")
    p.add_argument("--weight", type=int, default=1, help="weight to register them with")
    p.add_argument(
        "--lease", type=int, default=10, help="TTL in seconds of an etcd registration (default 10)"
    )
    p.add_argument("--admin-token", default=os.environ.get("TIDEGATE_ADMIN_TOKEN"), help=argparse.SUPPRESS)
    p.add_argument("--grace", type=float, default=30.0, help="seconds in-flight requests may take on exit")
    p.add_argument(
        "--drain-window", type=float, default=1.0, help="seconds an exiting instance answers the drain signal"
    )
    p.add_argument("--health-path", default="/healthz")
    p.add_argument("--app-health", action="store_true", help="the app answers the health path itself")
    p.add_argument("--keep-alive", type=float, default=75.0, help="idle keep-alive timeout of the instances")


def instance_args(args: argparse.Namespace) -> list[str]:
    out = ["--grace", str(args.grace), "--drain-window", str(args.drain_window)]
    out += ["--health-path", args.health_path, "--keep-alive", str(args.keep_alive)]
    return out + (["--app-health"] if args.app_health else [])


def run(args: argparse.Namespace) -> int:
    if args.instances < 1:
        print("tidegate serve: --instances must be at least 1", file=sys.stderr)
        return 2
    if bool(args.register) != bool(args.pool):
        print("tidegate serve: --register and --pool go together", file=sys.stderr)
        return 2
    if args.register and args.register.startswith("etcd://"):
        try:
            parse_etcd_url(args.register)
        except ValueError as exc:
            print(f"tidegate serve: --register: {exc}", file=sys.stderr)
            return 2
        if not 2 <= args.lease <= 3600:
            print("tidegate serve: --lease must be from 2 to 3600 seconds", file=sys.stderr)
            return 2
    if args.control_listen is not None:
        try:
            host, port = split_address(args.control_listen)
        except ValueError as exc:
            print(f"tidegate serve: --control-listen: {exc}", file=sys.stderr)
            return 2
        args.control_host, args.control_port = host, port
    else:
        args.control_host = "127.0.0.1"
    wildcard = {"0.0.0.0", "::", ""}
    if args.advertise is None and (args.control_host in wildcard or (args.register and args.host in wildcard)):
        print(
            "tidegate serve: listening on a wildcard address needs --advertise HOST "
            "(the address the gateway or director reaches this host by)",
            file=sys.stderr,
        )
        return 2
    import uvloop

    return uvloop.run(_serve(args))


async def _serve(args: argparse.Namespace) -> int:
    ports = [0] * args.instances if args.port == 0 else [args.port + i for i in range(args.instances)]
    supervisor = Supervisor(
        args.app, args.host, ports, instance_args(args), env=child_env(), advertise=args.advertise
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    control = await start_control_server(supervisor, args.control_port, args.control_host, args.advertise)
    etcd = args.register is not None and args.register.startswith("etcd://")
    admin = AdminClient(args.register, args.admin_token) if args.register and not etcd else None
    leased: LeasedKeys | None = None
    registered: list[str] = []
    code = 0
    try:
        try:
            await supervisor.start()
        except StartError as exc:
            print(f"tidegate serve: {exc}", file=sys.stderr, flush=True)
            return 1
        if admin is not None:
            try:
                for child in supervisor.children:
                    # The version the instance announced shows in the admin API and dashboard.
                    meta = {"supervisor": control.url}
                    if child.version:
                        meta["version"] = child.version
                    note = await register(admin, args.pool, child.public, args.weight, meta)
                    registered.append(child.public)
                    print(f"tidegate: {note}", file=sys.stderr, flush=True)
            except AdminError as exc:
                print(
                    f"tidegate serve: could not register with {args.register}: {exc}",
                    file=sys.stderr,
                    flush=True,
                )
                code = 1
                return code
        if etcd:
            leased = await _register_in_etcd(args, [c.public for c in supervisor.children], control.url)
        print(f"tidegate: ready ({args.instances} instances of {args.app})", file=sys.stderr, flush=True)
        await stop.wait()
        print("tidegate: supervisor stopping", file=sys.stderr, flush=True)
    finally:
        if leased is not None:
            gone = await leased.close()
            note = "deregistered from etcd" if gone else "etcd did not answer; the lease will expire"
            print(f"tidegate: {note}", file=sys.stderr, flush=True)
            await leased.client.aclose()
        if admin is not None:
            notes = await asyncio.gather(
                *(deregister(admin, args.pool, a, args.grace) for a in registered), return_exceptions=True
            )
            for outcome in notes:
                print(f"tidegate: {outcome}", file=sys.stderr, flush=True)
            await admin.aclose()
        await supervisor.stop(timeout=args.grace + args.drain_window + 5)
        await control.close()
    return code


async def _register_in_etcd(args: argparse.Namespace, addresses: list[str], control_url: str) -> LeasedKeys:
    endpoints, prefix = parse_etcd_url(args.register)
    value = encode_registration(Registration(args.weight, {"supervisor": control_url}))
    keys = {instance_key(prefix, args.pool, a): value for a in addresses}

    def note(text: str) -> None:
        print(f"tidegate: etcd: {text}", file=sys.stderr, flush=True)

    leased = LeasedKeys(EtcdClient(endpoints), args.lease, keys, note)
    leased.start()
    try:
        await asyncio.wait_for(leased.alive.wait(), 2.0)
    except TimeoutError:
        note(f"cannot reach {', '.join(endpoints)} yet; the instances serve, registration retries")
    else:
        for a in addresses:
            print(
                f"tidegate: registered {a} in pool {args.pool!r} (etcd {prefix})", file=sys.stderr, flush=True
            )
    return leased


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    # The instances stop with the supervisor even if it dies without cleaning up (instance/__main__).
    env["TIDEGATE_PARENT_PID"] = str(os.getpid())
    return env
