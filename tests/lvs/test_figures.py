"""Per-real-server figures as GET /api/pools and /metrics show them (ipvsadm -L --stats)."""

from __future__ import annotations

from prometheus_client import generate_latest

from tidegate.config import Config
from tidegate.config.model import LvsConfig
from tidegate.control.runtime.pools import build_pools
from tidegate.lvs.director import Director
from tidegate.lvs.frame import ACK, PSH, SYN, ip4
from tidegate.lvs.service import LvsService
from tidegate.lvs.vnet import PLAIN
from tidegate.service import StandaloneHost
from tidegate.testing.packets import tcp_frame

DIR_MAC, CLIENT_MAC, RS_MAC = (
    bytes.fromhex("02000000d001"),
    bytes.fromhex("02000000c001"),
    bytes.fromhex("02000000b001"),
)
VIP, CLIENT = ip4("198.18.0.100"), ip4("198.18.0.1")


def test_describe_pool_and_metrics_follow_the_connection_table() -> None:
    config = Config.model_validate(
        {
            "pools": [{"name": "web", "instances": [{"address": "198.18.1.11:8080"}]}],
            "lvs": {"mode": "nat", "vip": "198.18.0.100:80", "interface": "eth0", "pool": "web"},
        }
    )
    rt = StandaloneHost(config, build_pools(config))
    assert config.lvs is not None
    svc = LvsService(config.lvs, rt)
    pool = rt.pools["web"]
    d = Director(
        mode="nat",
        vip=VIP,
        port=80,
        proto=6,
        my_mac=DIR_MAC,
        my_ip=ip4("198.18.1.1"),
        mtu=1500,
        pool=pool,
        table=svc.table,
    )
    d.neigh[ip4("198.18.1.11")] = RS_MAC

    def feed(frame: bytearray) -> None:
        buf = bytearray(PLAIN + bytes(frame))
        assert d.handle(buf, len(buf), 0.0)

    feed(tcp_frame(DIR_MAC, CLIENT_MAC, CLIENT, VIP, 5000, 80, SYN))
    feed(tcp_frame(DIR_MAC, RS_MAC, ip4("198.18.1.11"), CLIENT, 8080, 5000, SYN | ACK))
    feed(tcp_frame(DIR_MAC, CLIENT_MAC, CLIENT, VIP, 5000, 80, ACK, b"GET / HTTP/1.1\r\n\r\n"))
    feed(tcp_frame(DIR_MAC, RS_MAC, ip4("198.18.1.11"), CLIENT, 8080, 5000, ACK | PSH, b"x" * 100))
    info = svc.describe_pool("web")
    assert svc.describe_pool("other") is None
    assert info is not None
    rs = info["instances"]["198.18.1.11:8080"]  # type: ignore[index]
    assert rs == {
        "active": 1,
        "conns": 1,
        "in_bytes": 40 + 58,
        "in_packets": 2,
        "inactive": 0,
        "out_bytes": 40 + 140,
        "out_packets": 2,
    }
    inst = pool.get("198.18.1.11:8080")
    assert inst is not None and inst.counters.active == 1 and inst.counters.bytes_out == 180
    text = generate_latest(rt.metrics).decode()
    assert 'tidegate_lvs_connections{address="198.18.1.11:8080",pool="web",state="active"} 1.0' in text
    assert 'tidegate_lvs_packets_total{address="198.18.1.11:8080",direction="out",pool="web"} 2.0' in text
    assert 'tidegate_lvs_bytes_total{address="198.18.1.11:8080",direction="in",pool="web"} 98.0' in text
    assert LvsConfig.model_fields["timeouts"] is not None
