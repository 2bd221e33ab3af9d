"""The director's per-frame decisions, fed frames as the packet socket delivers them."""

from __future__ import annotations

import struct
from collections import Counter

import pytest

from tidegate.balancing import Pool
from tidegate.lvs import arp
from tidegate.lvs.director import Director
from tidegate.lvs.frame import ACK, FIN, PSH, SYN, ip4
from tidegate.lvs.rewrite import tcp_mss
from tidegate.lvs.vnet import GSO_TCPV4, NEEDS_CSUM, PLAIN, VNET, VNET_LEN
from tidegate.testing.packets import checksums_ok, ipv4_frame, tcp_frame, udp_datagram

DIR_MAC = bytes.fromhex("02000000d001")
CLIENT_MAC = bytes.fromhex("02000000c001")
RS_MACS = [bytes.fromhex(f"020000000b1{i}") for i in range(3)]
VIP = ip4("198.18.0.100")
DIR_IP = ip4("198.18.0.2")
CLIENT = ip4("198.18.0.1")
RIPS = [ip4(f"198.18.0.1{i + 1}") for i in range(3)]


def make(
    mode: str, proto: int = 6, rport: int = 80, scheduler: str = "round-robin", mtu: int = 1500
) -> Director:
    pool = Pool("web", scheduler)
    for i in range(3):
        pool.add(f"198.18.0.1{i + 1}:{rport}", f"198.18.0.1{i + 1}", rport)
    d = Director(mode=mode, vip=VIP, port=80, proto=proto, my_mac=DIR_MAC, my_ip=DIR_IP, mtu=mtu, pool=pool)
    for i in range(3):
        d.neigh[RIPS[i]] = RS_MACS[i]
    return d


def feed(d: Director, frame: bytes | bytearray, vnet: bytes = PLAIN, now: float = 0.0) -> list[bytes]:
    buf = bytearray(vnet + bytes(frame) + b"\x00" * 64)
    return [bytes(x) for x in d.handle(buf, VNET_LEN + len(frame), now)]


def syn(sport: int, **kw: object) -> bytearray:
    return tcp_frame(DIR_MAC, CLIENT_MAC, CLIENT, VIP, sport, 80, SYN, **kw)  # type: ignore[arg-type]


def ack(sport: int, payload: bytes = b"", flags: int = ACK) -> bytearray:
    return tcp_frame(DIR_MAC, CLIENT_MAC, CLIENT, VIP, sport, 80, flags, payload)


def test_answers_arp_for_the_vip_only() -> None:
    d = make("dr")
    who_has_vip = arp.build(arp.REQUEST, CLIENT_MAC, CLIENT, bytes(6), VIP, arp.BROADCAST)
    (out,) = feed(d, who_has_vip)
    a = arp.parse(out, VNET_LEN)
    assert a is not None and a.op == arp.REPLY
    assert (a.sender_mac, a.sender_ip, a.target_mac, a.target_ip) == (DIR_MAC, VIP, CLIENT_MAC, CLIENT)
    assert out[VNET_LEN : VNET_LEN + 6] == CLIENT_MAC
    who_has_other = arp.build(arp.REQUEST, CLIENT_MAC, CLIENT, bytes(6), DIR_IP, arp.BROADCAST)
    assert feed(d, who_has_other) == []


def test_learns_real_server_mac_from_arp_and_asks_when_missing() -> None:
    d = make("dr")
    d.neigh.clear()
    outs = feed(d, syn(5000))
    assert len(outs) == 1  # the SYN is dropped, an ARP request goes out instead
    a = arp.parse(outs[0], VNET_LEN)
    assert a is not None and a.op == arp.REQUEST and a.target_ip == RIPS[0] and a.sender_ip == DIR_IP
    assert feed(d, syn(5000)) == []  # at most one request per second
    reply = arp.build(arp.REPLY, RS_MACS[0], RIPS[0], DIR_MAC, DIR_IP, DIR_MAC)
    assert feed(d, reply) == []
    assert d.neigh[RIPS[0]] == RS_MACS[0]
    (fwd,) = feed(d, syn(5000), now=1.5)  # the client's retransmitted SYN goes through
    assert fwd[VNET_LEN : VNET_LEN + 6] == RS_MACS[0]


def test_dr_rewrites_only_the_destination_mac() -> None:
    d = make("dr")
    frame = syn(5000)
    (out,) = feed(d, frame)
    out_frame = out[VNET_LEN:]
    assert out_frame[:6] == RS_MACS[0] and out_frame[6:12] == DIR_MAC
    assert out_frame[12 : len(frame)] == bytes(frame[12:])  # the IP packet is untouched


def test_connection_sticks_and_scheduler_spreads_new_ones() -> None:
    d = make("dr")
    seen: Counter[bytes] = Counter()
    for sport in range(6000, 6030):
        (o,) = feed(d, syn(sport))
        seen[o[VNET_LEN : VNET_LEN + 6]] += 1
        first = o[VNET_LEN : VNET_LEN + 6]
        for payload in (b"", b"GET / HTTP/1.1\r\n\r\n"):
            (o2,) = feed(d, ack(sport, payload))
            assert o2[VNET_LEN : VNET_LEN + 6] == first
    assert sorted(seen.values()) == [10, 10, 10]
    assert sum(d.table.stats_for(i).active for i in d.pool) == 30
    assert [i.counters.active for i in d.pool] == [10, 10, 10]


def test_only_a_syn_opens_a_connection() -> None:
    d = make("dr")
    assert feed(d, ack(7000, b"data")) == []
    assert d.dropped == {"no connection": 1}
    assert feed(d, tcp_frame(DIR_MAC, CLIENT_MAC, CLIENT, VIP, 7000, 81, SYN)) == []
    assert d.dropped["port"] == 1


def test_quiesced_server_keeps_its_connections_and_gets_no_new_ones() -> None:
    d = make("dr")
    (o,) = feed(d, syn(8000))
    feed(d, ack(8000))
    target = next(i for i in d.pool if d.table.stats_for(i).active == 1)
    d.pool.set_weight(target, 0)
    for sport in range(8001, 8011):
        (n,) = feed(d, syn(sport))
        assert n[VNET_LEN : VNET_LEN + 6] != o[VNET_LEN : VNET_LEN + 6]
    (o2,) = feed(d, ack(8000, b"more"))
    assert o2[VNET_LEN : VNET_LEN + 6] == o[VNET_LEN : VNET_LEN + 6]
    feed(d, ack(8000, flags=FIN | ACK))
    assert target.counters.active == 0


def test_nat_rewrites_both_ways_with_valid_checksums() -> None:
    d = make("nat", rport=8080)
    (o,) = feed(d, syn(9000))
    f = o[VNET_LEN:]
    assert f[:6] == RS_MACS[0] and f[30:34] == RIPS[0] and struct.unpack_from("!H", f, 36)[0] == 8080
    assert checksums_ok(f)
    reply = tcp_frame(DIR_MAC, RS_MACS[0], RIPS[0], CLIENT, 8080, 9000, SYN | ACK)
    (r,) = feed(d, reply)
    rf = r[VNET_LEN:]
    assert rf[:6] == CLIENT_MAC and rf[6:12] == DIR_MAC
    assert rf[26:30] == VIP and struct.unpack_from("!H", rf, 34)[0] == 80 and rf[30:34] == CLIENT
    assert checksums_ok(rf)
    st = d.table.stats_for(next(iter(d.pool)))
    assert (st.in_packets, st.out_packets) == (1, 1)
    # a packet from a real server that is no connection of ours is left to the kernel
    assert feed(d, tcp_frame(DIR_MAC, RS_MACS[0], RIPS[0], DIR_IP, 8080, 9000, ACK)) == []


def test_nat_passes_offload_pending_frames_with_their_header() -> None:
    d = make("nat", rport=8080)
    feed(d, syn(9100))
    body = b"x" * 20000
    frame = tcp_frame(DIR_MAC, CLIENT_MAC, CLIENT, VIP, 9100, 80, ACK | PSH, body, partial=True)
    vnet = VNET.pack(NEEDS_CSUM, GSO_TCPV4, 66, 1448, 34, 16)
    (o,) = feed(d, frame, vnet)
    assert o[:VNET_LEN] == vnet  # the kernel will segment and checksum on the way out
    f = bytearray(o[VNET_LEN:])
    from tidegate.lvs.rewrite import complete_checksum

    complete_checksum(f, 34, 16, len(f))
    assert checksums_ok(f) and f[30:34] == RIPS[0]
    st = d.table.stats_for(next(iter(d.pool)))
    assert st.in_packets == 1 + -(-20000 // 1448)


def test_udp_nat() -> None:
    d = make("nat", proto=17, rport=5353)
    frame = ipv4_frame(DIR_MAC, CLIENT_MAC, CLIENT, VIP, 17, udp_datagram(CLIENT, VIP, 4000, 80, b"q"))
    (o,) = feed(d, frame)
    assert checksums_ok(o[VNET_LEN:]) and o[VNET_LEN + 30 : VNET_LEN + 34] == RIPS[0]
    (o2,) = feed(d, frame)
    assert o2[VNET_LEN + 30 : VNET_LEN + 34] == RIPS[0]


def test_tun_encapsulates_and_clamps_mss() -> None:
    d = make("tun", mtu=1500)
    frame = syn(9200, options=struct.pack("!BBH", 2, 4, 1460))
    (o,) = feed(d, frame)
    f = o[VNET_LEN:]
    assert o[:VNET_LEN] == PLAIN
    assert f[:6] == RS_MACS[0] and f[23] == 4 and f[26:30] == DIR_IP and f[30:34] == RIPS[0]
    assert f[34 + 16 : 34 + 20] == VIP  # inner destination stays the VIP
    assert tcp_mss(f, 54) == 1500 - 20 - 40
    assert checksums_ok(f) and checksums_ok(f, 34)


def test_tun_cuts_what_would_not_fit_and_completes_checksums() -> None:
    d = make("tun", mtu=1500)
    feed(d, syn(9300))
    body = bytes(range(256)) * 40
    frame = tcp_frame(DIR_MAC, CLIENT_MAC, CLIENT, VIP, 9300, 80, ACK | PSH, body, partial=True)
    outs = feed(d, frame, VNET.pack(NEEDS_CSUM, GSO_TCPV4, 66, 1448, 34, 16))
    got = b""
    for o in outs:
        f = o[VNET_LEN:]
        assert len(f) - 14 <= 1500
        assert checksums_ok(f) and checksums_ok(f, 34)
        got += f[34 + 40 :]
    assert got == body


def test_tun_small_partial_frame_is_completed() -> None:
    d = make("tun")
    feed(d, syn(9400))
    frame = tcp_frame(DIR_MAC, CLIENT_MAC, CLIENT, VIP, 9400, 80, ACK | PSH, b"GET /", partial=True)
    (o,) = feed(d, frame, VNET.pack(NEEDS_CSUM, 0, 0, 0, 34, 16))
    assert checksums_ok(o[VNET_LEN:], 34)


def test_tun_udp_too_big_with_df_gets_icmp() -> None:
    d = make("tun", proto=17)
    frame = ipv4_frame(DIR_MAC, CLIENT_MAC, CLIENT, VIP, 17, udp_datagram(CLIENT, VIP, 4000, 80, b"q" * 1470))
    (o,) = feed(d, frame)
    f = o[VNET_LEN:]
    assert f[:6] == CLIENT_MAC and f[23] == 1 and f[34] == 3 and f[35] == 4
    assert struct.unpack_from("!H", f, 34 + 6)[0] == 1480


def test_tun_udp_too_big_without_df_is_fragmented() -> None:
    d = make("tun", proto=17)
    frame = ipv4_frame(
        DIR_MAC, CLIENT_MAC, CLIENT, VIP, 17, udp_datagram(CLIENT, VIP, 4000, 80, b"q" * 1470), df=False
    )
    outs = feed(d, frame)
    assert len(outs) == 2 and all(len(o) - VNET_LEN - 14 <= 1500 for o in outs)


@pytest.mark.parametrize("mode", ["dr", "nat", "tun"])
def test_no_eligible_server_drops(mode: str) -> None:
    d = make(mode)
    for inst in d.pool:
        d.pool.set_weight(inst, 0)
    assert feed(d, syn(9500)) == []
    assert d.dropped == {"no real server": 1}
