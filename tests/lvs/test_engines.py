"""Engines that cannot run here say why and exit 2; the real-server helper's plan; the BPF
filter's logic; the config section."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tidegate.config import ConfigError, load_config
from tidegate.lvs import realserver
from tidegate.lvs.decap import inner_packet
from tidegate.lvs.frame import ip4
from tidegate.lvs.packet_socket import filter_program
from tidegate.testing.packets import ipv4_frame, tcp_frame
from tidegate.testing.process import run_tidegate

BASE = """
[[pools]]
name = "web"
instances = [ {{ address = "198.18.0.11:80" }} ]

[lvs]
mode = "dr"
engine = "{engine}"
vip = "198.18.0.100:80"
interface = "{interface}"
pool = "web"
"""


def _ipvs_present() -> bool:
    # Asked without netlink: pyroute2's failed IPVS socket would leak into this test process.
    return Path("/proc/net/ip_vs").exists() or Path("/sys/module/ip_vs").exists()


def test_ipvs_engine_without_ipvs_says_so_and_exits_2(tmp_path: Path) -> None:
    if _ipvs_present():
        pytest.skip("this kernel has IPVS: the engine would run (and change the host's IPVS table)")
    cfg = tmp_path / "t.toml"
    cfg.write_text(BASE.format(engine="ipvs", interface="lo"))
    res = run_tidegate("run", str(cfg))
    assert res.returncode == 2, res.stderr
    assert "the kernel has no IPVS" in res.stderr
    assert 'engine = "userspace"' in res.stderr
    assert "lvs listening" not in res.stderr


def test_userspace_engine_on_a_missing_interface_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text(BASE.format(engine="userspace", interface="tgnosuch0"))
    res = run_tidegate("run", str(cfg))
    assert res.returncode == 2
    assert "interface 'tgnosuch0' does not exist" in res.stderr


def test_config_timeouts_and_vip(tmp_path: Path) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text(
        BASE.format(engine="userspace", interface="eth0")
        + '[lvs.timeouts]\nestablished = "15m"\nudp = "30s"\n'
    )
    lvs = load_config(str(cfg)).lvs
    assert lvs is not None and lvs.timeouts.established == 900.0 and lvs.timeouts.udp == 30.0
    assert lvs.timeouts.fin_wait == 120.0
    cfg.write_text(
        BASE.format(engine="userspace", interface="eth0").replace("198.18.0.100:80", "vip.example:80")
    )
    with pytest.raises(ConfigError) as err:
        load_config(str(cfg))
    assert "lvs.vip" in err.value.render() and "IPv4" in err.value.render()


def test_realserver_plans() -> None:
    dr = [s.command for s in realserver.plan("dr", "198.18.0.100", "eth0", kernel_ipip=False)]
    assert dr[0] == "ip addr add 198.18.0.100/32 dev lo"
    for dev in ("all", "eth0"):
        assert f"sysctl -w net.ipv4.conf.{dev}.arp_ignore=1" in dr
        assert f"sysctl -w net.ipv4.conf.{dev}.arp_announce=2" in dr
    assert not any("rp_filter" in c for c in dr)
    tun = realserver.plan("tun", "198.18.0.100", "eth0", kernel_ipip=False)
    assert tun[0].kind == "decap" and "ip addr add 198.18.0.100/32 dev tlvs0" in [s.command for s in tun]
    assert "sysctl -w net.ipv4.conf.tlvs0.rp_filter=0" in [s.command for s in tun]
    kern = [s.command for s in realserver.plan("tun", "198.18.0.100", "eth1", kernel_ipip=True)]
    assert kern[:2] == ["ip link set tunl0 up", "ip addr add 198.18.0.100/32 dev tunl0"]
    assert "sysctl -w net.ipv4.conf.eth1.rp_filter=0" in kern
    assert [
        s.command
        for s in realserver.plan("nat", "198.18.0.100", "eth0", kernel_ipip=False, director="198.18.1.1")
    ] == ["ip route replace default via 198.18.1.1"]


def test_realserver_command_prints_without_apply() -> None:
    res = run_tidegate("lvs-realserver", "--mode", "dr", "--vip", "198.18.0.100")
    assert res.returncode == 0
    assert "ip addr add 198.18.0.100/32 dev lo" in res.stdout
    assert "arp_announce=2" in res.stdout


def test_decapsulator_passes_only_ipip_to_the_vip() -> None:
    vip, other = ip4("198.18.0.100"), ip4("198.18.0.101")
    inner = bytes(tcp_frame(bytes(6), bytes(6), ip4("198.18.0.1"), vip, 1, 80, 2)[14:])
    outer = bytes(ipv4_frame(bytes(6), bytes(6), ip4("198.18.0.2"), ip4("198.18.0.11"), 4, inner)[14:])
    got = inner_packet(outer, vip)
    assert got is not None and bytes(got) == inner
    assert inner_packet(outer, other) is None
    not_ipip = bytearray(outer)
    not_ipip[9] = 6
    assert inner_packet(bytes(not_ipip), vip) is None
    assert inner_packet(outer[:30], vip) is None


def _run_cbpf(prog: list[tuple[int, int, int, int]], frame: bytes, pkttype: int) -> int:
    """A tiny classic-BPF interpreter for the opcodes filter_program uses."""
    a, pc = 0, 0
    while True:
        code, jt, jf, k = prog[pc]
        if code == 0x06:
            return k
        if code in (0x30, 0x28, 0x20):
            if k == 0xFFFFF004:
                a = pkttype
            else:
                size = {0x30: 1, 0x28: 2, 0x20: 4}[code]
                if k + size > len(frame):
                    return 0
                a = int.from_bytes(frame[k : k + size], "big")
            pc += 1
        elif code == 0x15:
            pc += 1 + (jt if a == k else jf)
        else:
            raise AssertionError(code)


@pytest.mark.parametrize("nat", [False, True])
def test_bpf_filter_accepts_what_the_director_acts_on(nat: bool) -> None:
    vip = ip4("198.18.0.100")
    prog = filter_program(vip, 6 if nat else None)
    assert all(len(struct.pack("HBBI", *i)) == 8 for i in prog)
    to_vip = bytes(tcp_frame(bytes(6), bytes(6), ip4("198.18.0.1"), vip, 1, 80, 2))
    reply = bytes(tcp_frame(bytes(6), bytes(6), ip4("198.18.1.11"), ip4("198.18.0.1"), 80, 1, 0x12))
    arp = bytes(12) + b"\x08\x06" + bytes(28)
    ipv6 = bytes(12) + b"\x86\xdd" + bytes(40)
    assert _run_cbpf(prog, to_vip, 0) > 0
    assert _run_cbpf(prog, to_vip, 3) == 0  # for another host (a flooded frame)
    assert _run_cbpf(prog, arp, 1) > 0
    assert _run_cbpf(prog, ipv6, 0) == 0
    assert (_run_cbpf(prog, reply, 0) > 0) == nat
