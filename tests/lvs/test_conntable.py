"""The connection table and TCP state tracking, with a clock the test owns."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tidegate.balancing import Instance
from tidegate.lvs.conntable import ConnTable
from tidegate.lvs.frame import ACK, FIN, PSH, RST, SYN
from tidegate.lvs.tcp_state import TABLE, Direction, TcpState, Timeouts, event, next_state

ES, SR, FW, TW, CL, CW = (
    TcpState.ESTABLISHED,
    TcpState.SYN_RECV,
    TcpState.FIN_WAIT,
    TcpState.TIME_WAIT,
    TcpState.CLOSE,
    TcpState.CLOSE_WAIT,
)


def test_table_shape() -> None:
    assert len(TABLE) == 3
    for per_dir in TABLE:
        assert len(per_dir) == 4
        for row in per_dir:
            assert len(row) == len(TcpState)


def test_event_priority_is_rst_syn_fin_ack() -> None:
    assert event(RST | SYN | FIN | ACK) == 3
    assert event(SYN | ACK) == 0
    assert event(FIN | ACK) == 1
    assert event(ACK | PSH) == 2
    assert event(PSH) == -1


def test_dr_lifecycle_input_only() -> None:
    d = Direction.INPUT_ONLY
    s = next_state(TcpState.NONE, SYN, d)
    assert s == SR
    s = next_state(s, ACK, d)
    assert s == ES
    s = next_state(s, ACK | PSH, d)
    assert s == ES
    s = next_state(s, FIN | ACK, d)
    assert s == FW
    s = next_state(s, ACK, d)
    assert s == FW
    assert next_state(ES, RST, d) == CL


def test_nat_lifecycle_both_directions() -> None:
    s = next_state(TcpState.NONE, SYN, Direction.INPUT)
    assert s == SR
    s = next_state(s, SYN | ACK, Direction.OUTPUT)
    assert s == SR
    s = next_state(s, ACK, Direction.INPUT)
    assert s == ES
    s = next_state(s, FIN | ACK, Direction.OUTPUT)  # the server closes first
    assert s == FW
    s = next_state(s, FIN | ACK, Direction.INPUT)
    assert s == TW
    assert next_state(ES, FIN | ACK, Direction.INPUT) == CW


def _inst(name: str = "198.18.1.11:80") -> Instance:
    host, port = name.split(":")
    return Instance(name, host, int(port))


def test_active_and_inactive_follow_established() -> None:
    t = ConnTable()
    a = _inst()
    c = t.open(b"k1", a, 0.0)
    st = t.stats_for(a)
    assert (st.conns, st.active, st.inactive, a.counters.active) == (1, 0, 1, 0)
    t.tcp_packet(c, SYN, Direction.INPUT_ONLY, 0.0)
    t.tcp_packet(c, ACK, Direction.INPUT_ONLY, 0.1)
    assert (st.active, st.inactive, a.counters.active) == (1, 0, 1)
    t.tcp_packet(c, FIN | ACK, Direction.INPUT_ONLY, 0.2)
    assert (st.active, st.inactive, a.counters.active) == (0, 1, 0)
    t.remove(c)
    assert (st.active, st.inactive, a.counters.completed, len(t)) == (0, 0, 1, 0)


def test_timeouts_per_state() -> None:
    tm = Timeouts(established=900, fin_wait=120, syn_recv=60)
    t = ConnTable(tm)
    a = _inst()
    c = t.open(b"k", a, 0.0)
    t.tcp_packet(c, SYN, Direction.INPUT_ONLY, 0.0)
    assert t.expire(59.0) == 0
    assert t.expire(61.0) == 1
    c = t.open(b"k", a, 100.0)
    t.tcp_packet(c, SYN, Direction.INPUT_ONLY, 100.0)
    t.tcp_packet(c, ACK, Direction.INPUT_ONLY, 100.0)
    assert t.expire(100.0 + 899) == 0 and len(t) == 1
    t.tcp_packet(c, ACK, Direction.INPUT_ONLY, 500.0)  # traffic moves the deadline
    assert t.expire(1001.0) == 0 and len(t) == 1
    t.tcp_packet(c, FIN | ACK, Direction.INPUT_ONLY, 600.0)  # deadline moves earlier: 720
    assert t.expire(719.0) == 0
    assert t.expire(722.0) == 1 and len(t) == 0
    assert a.counters.active == 0


def test_udp_entries_live_300s_after_last_packet() -> None:
    t = ConnTable()
    a = _inst()
    c = t.open(b"u", a, 0.0, udp=True)
    assert a.counters.active == 1
    t.udp_packet(c, 250.0)
    assert t.expire(301.0) == 0
    assert t.expire(551.0) == 1
    assert a.counters.active == 0


def test_reply_key_and_reopen() -> None:
    t = ConnTable()
    a, b = _inst("198.18.1.11:80"), _inst("198.18.1.12:80")
    c = t.open(b"k", a, 0.0, rkey=b"r")
    assert t.replies[b"r"] is c
    c2 = t.open(b"k", b, 1.0, rkey=b"r2")  # the same 5-tuple reopened replaces the old entry
    assert t.conns[b"k"] is c2 and b"r" not in t.replies and c.dead
    assert t.stats_for(a).inactive == 0 and t.stats_for(b).inactive == 1


flags_st = st.sampled_from([SYN, SYN | ACK, ACK, ACK | PSH, FIN | ACK, RST, RST | ACK, PSH])


@settings(max_examples=150)
@given(
    st.lists(
        st.tuples(st.integers(0, 7), st.integers(0, 2), flags_st, st.floats(0, 200), st.booleans()),
        max_size=80,
    )
)
def test_figures_stay_consistent(ops: list[tuple[int, int, int, float, bool]]) -> None:
    """Whatever packets arrive and whenever: per-server active+inactive equals its live entries,
    counters.active equals ActiveConn, nothing outlives its deadline after expire()."""
    t = ConnTable(Timeouts())
    insts = [_inst(f"198.18.1.{11 + i}:80") for i in range(3)]
    now = 0.0
    for key_i, inst_i, flags, dt, udp in ops:
        now += dt
        key = bytes([key_i])
        c = t.conns.get(key)
        if c is None:
            c = t.open(key, insts[inst_i], now, udp=udp)
        if c.udp:
            t.udp_packet(c, now)
        else:
            t.tcp_packet(c, flags, Direction.INPUT_ONLY if inst_i else Direction.INPUT, now)
        t.expire(now)
        for c in t:
            assert c.expires > now - 1.0
        for inst in insts:
            live = [c for c in t if c.inst is inst]
            st_ = t.stats_for(inst)
            assert st_.active + st_.inactive == len(live)
            assert st_.active == sum(1 for c in live if c.active) == inst.counters.active
    t.expire(now + 10_000)
    assert len(t) == 0
    assert all(i.counters.active == 0 for i in insts)
