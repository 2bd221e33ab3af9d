"""The seed's point about DNS scheduling, measured with a real caching resolver (unbound).

Clients resolve www through unbound, which asks tidegate's DNS layer, and open a TCP connection
to the address they got (four "instances": listeners on 127.0.0.21-24 that count connections).
Two experiments:

1. Withdrawal against TTL: while clients run, the instance they are using is drained. How long do
   connections keep reaching it? Through the resolver: until the cached answer expires, up to TTL.
   Clients that ask tidegate directly (no cache): at once.
2. Balance: many clients behind one resolver share one cached answer, so for a whole TTL they all
   go to the same instance. Compared with clients asking tidegate directly (a weighted pick per
   query) and with tidegate's L4 gateway (`[[tcp]]`, the pool's scheduler per connection).

    /work/main/.venv/bin/python bench/dns_resolver.py [--ttls 2 5 10] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import dns.asyncquery
import dns.message

from tidegate.balancing.state import State
from tidegate.testing.dns_server import DnsServer
from tidegate.testing.process import Proc, tidegate

IPS = ["127.0.0.21", "127.0.0.22", "127.0.0.23", "127.0.0.24"]
Resolve = Callable[[], Awaitable[str]]


class Instances:
    """Four listeners on one port that log (time, ip) for every connection they accept."""

    def __init__(self) -> None:
        self.log: list[tuple[float, str]] = []
        self.servers: list[asyncio.Server] = []
        self.port = 0

    async def start(self) -> None:
        for ip in IPS:

            async def on_conn(r: asyncio.StreamReader, w: asyncio.StreamWriter, ip: str = ip) -> None:
                self.log.append((time.monotonic(), ip))
                await r.read(1)  # the client's byte: closing with it unread would reset
                w.close()

            srv = await asyncio.start_server(on_conn, ip, self.port)
            self.port = srv.sockets[0].getsockname()[1]
            self.servers.append(srv)

    def close(self) -> None:
        for s in self.servers:
            s.close()


def dns_resolve(name: str, host: str, port: int) -> Resolve:
    async def resolve() -> str:
        q = dns.message.make_query(name, "A")
        r = await dns.asyncquery.udp(q, host, port=port, timeout=2)
        return str(r.answer[0][0].address)  # the first address, as most clients use

    return resolve


async def clients(
    n: int, pace: float, seconds: float, resolve: Resolve | None, port: int, errors: Counter[str]
) -> None:
    """`n` clients, each opening a connection every `pace` seconds to the address `resolve` gives
    (or to 127.0.0.1:port, the gateway, when resolve is None)."""
    stop = time.monotonic() + seconds

    async def one() -> None:
        await asyncio.sleep(random.random() * pace)  # spread the clients over the period
        while time.monotonic() < stop:
            t = time.monotonic()
            try:
                ip = await resolve() if resolve else "127.0.0.1"
                r, w = await asyncio.open_connection(ip, port)
                w.write(b"x")
                await r.read()
                w.close()
            except Exception as exc:
                errors[type(exc).__name__] += 1
            await asyncio.sleep(max(0.0, pace - (time.monotonic() - t)))

    await asyncio.gather(*(one() for _ in range(n)))


def pool_pick(server: DnsServer) -> Resolve:
    """The decision the gateway makes per connection, the pool's scheduler, without a proxy in
    the path (for when the tcp gateway cannot run)."""
    pool = server.pool("web")

    async def pick() -> str:
        inst = pool.pick()
        assert inst is not None
        return inst.host

    return pick


def unbound_conf(d: Path, port: int, upstream: int) -> Path:
    conf = d / "unbound.conf"
    conf.write_text(
        f"""server:
  interface: 127.0.0.1@{port}
  port: {port}
  do-ip6: no
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{d}"
  pidfile: "{d}/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 1
  num-threads: 1
  module-config: "iterator"
  do-not-query-localhost: no
  access-control: 127.0.0.0/8 allow
  local-zone: "test." nodefault
  qname-minimisation: no
  prefetch: no
  serve-expired: no
  rrset-roundrobin: yes
stub-zone:
  name: "example.test."
  stub-addr: 127.0.0.1@{upstream}
remote-control:
  control-enable: no
"""
    )
    return conf


def free_port() -> int:
    """A port free for both UDP and TCP right now (unbound takes a fixed port)."""
    import socket

    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = int(u.getsockname()[1])
            with socket.socket() as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def zone_config(port: int, ttls: list[int], even_ttl: int) -> str:
    insts = ", ".join(f'{{ address = "{ip}:{port}" }}' for ip in IPS)
    recs = "".join(
        f'[[dns.records]]\nname = "t{t}.example.test."\npool = "web"\nttl = {t}\nanswers = 1\n' for t in ttls
    )
    recs += f'[[dns.records]]\nname = "even.example.test."\npool = "web"\nttl = {even_ttl}\nanswers = 1\n'
    return f"""
[[pools]]
name = "web"
instances = [{insts}]

[dns]
listen = "127.0.0.1:0"
zone = "example.test."
nameservers = ["ns1.example.test."]
{recs}"""


async def withdrawal(
    server: DnsServer, inst: Instances, name: str, resolve: Resolve, ttl: int, n: int, pace: float
) -> tuple[float, int, int]:
    """Drain an instance just after tidegate handed it out; return (seconds it still got
    connections, how many it got, how many queries tidegate answered for the name meanwhile).

    Draining right after the resolver fetched the answer is the worst case, the one an upgrade
    has to wait for: the resolver keeps serving that answer for the whole TTL."""
    errors: Counter[str] = Counter()
    warm = max(2.0, 1.5 * ttl)
    after = ttl + 3.0
    fig = server.service.figures.record(name)
    # Clients outlast the measurement: the wait for a refresh (up to TTL + 1 s) and `after`.
    run = asyncio.create_task(clients(n, pace, warm + ttl + 1.5 + after, resolve, inst.port, errors))
    await asyncio.sleep(warm)
    seen = fig.queries
    while fig.queries == seen:  # wait for the next query to reach tidegate (a cache refresh)
        await asyncio.sleep(0.005)
    victim = max(fig.last_answered.items(), key=lambda kv: kv[1])[0]
    pool = server.pool("web")
    target = next(i for i in pool if i.host == victim)
    server.call(lambda: pool.set_state(target, State.DRAINING, "bench"))
    t_w = time.monotonic()
    q0 = fig.queries
    await asyncio.sleep(after)
    queries = fig.queries - q0
    await run
    server.call(lambda: pool.set_state(target, State.UP, "bench"))
    late = [t for t, ip in inst.log if ip == victim and t > t_w]
    return (max(late) - t_w if late else 0.0), len(late), queries


def balance(log: list[tuple[float, str]], t0: float) -> dict[str, float]:
    total = Counter(ip for _, ip in log)
    shares = [total[ip] / max(1, len(log)) for ip in IPS]
    windows: dict[int, Counter[str]] = {}
    for t, ip in log:
        windows.setdefault(int(t - t0), Counter())[ip] += 1
    per_window_max = [max(c.values()) / sum(c.values()) for c in windows.values() if sum(c.values()) >= 20]
    return {
        "connections": len(log),
        "max_share": max(shares),
        "min_share": min(shares),
        "cv": statistics.pstdev(shares) / statistics.mean(shares) if log else 0.0,
        "busiest_1s": statistics.mean(per_window_max) if per_window_max else 0.0,
    }


async def main_async(args: argparse.Namespace) -> int:
    inst = Instances()
    await inst.start()
    server = DnsServer(zone_config(inst.port, args.ttls, args.even_ttl))
    tmp = tempfile.TemporaryDirectory()
    uport = free_port()
    unbound = Proc(["unbound", "-d", "-c", str(unbound_conf(Path(tmp.name), uport, server.port))])
    gw: Proc | None = None
    try:
        unbound.wait_for("start of service")
        print(f"tidegate dns on {server.port}, unbound on {uport}, instances {IPS} port {inst.port}")
        print(f"\n1. withdrawal: {args.clients} clients, one connection each per {args.pace}s, answers = 1")
        print(
            f"{'TTL':>5} {'via':>9} {'still reached for':>18} {'late connections':>17} {'queries at tidegate':>20}"
        )
        for ttl in args.ttls:
            name = f"t{ttl}.example.test."
            for via, port in (("unbound", uport), ("direct", server.port)):
                inst.log.clear()
                res = dns_resolve(name, "127.0.0.1", port)
                took, count, queries = await withdrawal(server, inst, name, res, ttl, args.clients, args.pace)
                print(f"{ttl:>4}s {via:>9} {took:>17.2f}s {count:>17} {queries:>20}")
        print(
            "(drained just after tidegate answered; queries at tidegate = for that name while clients went on)"
        )

        print(
            f"\n2. balance: {args.many} clients for {args.seconds}s, 4 equal instances, TTL {args.even_ttl}s"
        )
        cfg = Path(tmp.name) / "gw.toml"
        insts = ", ".join(f'{{ address = "{ip}:{inst.port}" }}' for ip in IPS)
        cfg.write_text(
            f'[[pools]]\nname = "web"\ninstances = [{insts}]\n\n[[tcp]]\nlisten = "127.0.0.1:0"\npool = "web"\n'
        )
        gw = tidegate("run", str(cfg))
        gw.wait_for("tidegate: ready")
        gw_port = gw.address("tcp")[1]
        print(
            f"{'via':>26} {'connections':>11} {'max share':>9} {'min share':>9} {'CV':>5} {'busiest/1s':>10}"
        )
        modes: list[tuple[str, Resolve | None, int]] = [
            ("unbound (shared cache)", dns_resolve("even.example.test.", "127.0.0.1", uport), inst.port),
            ("tidegate dns, direct", dns_resolve("even.example.test.", "127.0.0.1", server.port), inst.port),
            ("tidegate tcp gateway (rr)", None, gw_port),
            ("pool.pick per connection", pool_pick(server), inst.port),
        ]
        for via, res, port in modes:
            inst.log.clear()
            errors: Counter[str] = Counter()
            t0 = time.monotonic()
            await clients(args.many, args.pace, args.seconds, res, port, errors)
            b = balance(inst.log, t0)
            print(
                f"{via:>26} {b['connections']:>11.0f} {b['max_share']:>9.1%} {b['min_share']:>9.1%}"
                f" {b['cv']:>5.2f} {b['busiest_1s']:>10.1%}"
                + (f"  errors {dict(errors.most_common(2))}" if errors else "")
            )
        print("(share = fraction of connections per instance, ideal 25%; busiest/1s = mean over 1-s windows")
        print(" of the busiest instance's share: 25% is even, 100% means every client on one instance)")
    finally:
        if gw is not None:
            gw.stop()
        unbound.stop()
        server.close()
        inst.close()
        tmp.cleanup()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ttls", type=int, nargs="+", default=[2, 5, 10])
    ap.add_argument("--even-ttl", type=int, default=5)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--many", type=int, default=50)
    ap.add_argument("--pace", type=float, default=0.1)
    ap.add_argument("--seconds", type=float, default=15.0)
    args = ap.parse_args()
    for tool in ("unbound",):
        if shutil.which(tool) is None:
            print(f"{tool} is missing (apt-get install {tool})", file=sys.stderr)
            return 2
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
