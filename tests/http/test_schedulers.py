"""Every scheduler's distribution through real sockets: the gateway asks the pool per request."""

from __future__ import annotations

import http.client
import itertools
import socket
import threading
from collections import Counter

from tidegate.testing.gateway import gateway_config as config


def names(gw, n: int, path: str = "/", headers: dict[str, str] | None = None) -> list[str]:
    c = http.client.HTTPConnection(gw.host, gw.port, timeout=10)
    out = []
    for _ in range(n):
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        assert r.status == 200
        out.append(r.read().decode())
    c.close()
    return out


def test_smooth_weighted_round_robin_follows_weights_without_bursts(backends, gateway) -> None:
    a, b, c = backends("a", "b", "c")
    cfg = config(
        [
            {"address": a.address, "weight": 1},
            {"address": b.address, "weight": 2},
            {"address": c.address, "weight": 3},
        ],
        scheduler="weighted-round-robin",
    )
    gw = gateway(cfg)
    seen = names(gw, 60)
    assert Counter(seen) == {"a": 10, "b": 20, "c": 30}
    # nginx's smooth algorithm interleaves: the heaviest never gets more than two in a row
    assert max(len(list(g)) for _, g in itertools.groupby(seen)) <= 2


def test_random_spreads_over_every_instance(backends, gateway) -> None:
    bs = backends("a", "b", "c")
    gw = gateway(config([b.address for b in bs], scheduler="random"))
    counts = Counter(names(gw, 300))
    # binomial(300, 1/3): mean 100, sd 8.2; 40 is ~5 sd
    assert set(counts) == {"a", "b", "c"} and all(60 <= v <= 140 for v in counts.values())


def _busy_then_quick(gw, busy_backend, n_busy: int, n_quick: int, full_config) -> list[str]:
    """Hold n_busy slow requests on the pool's only instance, add the others, send quick ones."""
    results: list[int] = []

    def slow() -> None:
        c = http.client.HTTPConnection(gw.host, gw.port, timeout=10)
        c.request("GET", "/slow?ms=1500")
        results.append(c.getresponse().status)
        c.close()

    threads = [threading.Thread(target=slow) for _ in range(n_busy)]
    for t in threads:
        t.start()
    busy_backend.wait_for_request("/slow", count=n_busy)
    gw.reload(full_config)
    quick = names(gw, n_quick)
    for t in threads:
        t.join(10)
    assert results == [200] * n_busy
    return quick


def test_least_connections_avoids_the_busy_instance(backends, gateway) -> None:
    a, b, c = backends("a", "b", "c")
    gw = gateway(config([a.address], scheduler="least-connections"))
    full = config([a.address, b.address, c.address], scheduler="least-connections")
    quick = _busy_then_quick(gw, a, 2, 12, full)
    # ties between the idle ones are broken in turn
    assert Counter(quick) == {"b": 6, "c": 6}


def test_p2c_avoids_the_busy_instance(backends, gateway) -> None:
    a, b, c = backends("a", "b", "c")
    gw = gateway(config([a.address], scheduler="p2c"))
    quick = _busy_then_quick(gw, a, 1, 30, config([a.address, b.address, c.address], scheduler="p2c"))
    # of any two instances drawn, at least one is idle and beats the busy one
    assert "a" not in quick and set(quick) == {"b", "c"}


def _source_ip_names(gw, sources: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for src in sources:
        for _ in range(3):
            with socket.create_connection((gw.host, gw.port), timeout=10, source_address=(src, 0)) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            out.setdefault(src, []).append(data.rpartition(b"\r\n\r\n")[2].decode())
    return out


def test_hashing_schedulers_keep_affinity_and_spread_keys(backends, gateway) -> None:
    bs = backends("a", "b", "c")
    addresses = [b.address for b in bs]
    cases = [
        ("consistent-hash", "uri", lambda k: ("/item/" + k, {})),
        ("maglev", "header:X-User", lambda k: ("/", {"X-User": k})),
        ("consistent-hash", "cookie:session", lambda k: ("/", {"Cookie": f"theme=dark; session={k}"})),
        ("source-hash", "uri", lambda k: ("/page/" + k, {})),
    ]
    for scheduler, hash_key, request_for in cases:
        gw = gateway(config(addresses, scheduler=scheduler, hash_key=hash_key))
        owners = {}
        for key in (f"k{i}" for i in range(30)):
            path, headers = request_for(key)
            got = set(names(gw, 4, path, headers))
            assert len(got) == 1, (scheduler, hash_key, key, got)  # affinity
            owners[key] = got.pop()
        assert len(set(owners.values())) >= 2, (scheduler, hash_key, owners)  # keys spread
        gw.stop()


def test_source_ip_hashing(backends, gateway) -> None:
    bs = backends("a", "b", "c")
    gw = gateway(config([b.address for b in bs], scheduler="source-hash", hash_key="source-ip"))
    seen = _source_ip_names(gw, [f"127.0.0.{i}" for i in range(2, 20)])
    assert all(len(set(v)) == 1 for v in seen.values())
    assert len({v[0] for v in seen.values()}) >= 2
