"""The TCP connection states a director tracks, and their transitions: IPVS's table
(net/netfilter/ipvs/ip_vs_proto_tcp.c, `tcp_states`), written as data.

Theory of operation: the director is not an endpoint, so it tracks a connection from the packets
it forwards. In NAT it sees both directions (INPUT: client → real server, OUTPUT: the replies); in
DR and TUN only the client's side (INPUT_ONLY). Each packet's event is the first of rst, syn, fin,
ack its flags carry; the next state is table[direction][event][state]. Each state has a timeout
after the last packet; an entry that outlives it is forgotten. A connection counts as *active*
only in ESTABLISHED, and as *inactive* in every other state, which is what `ipvsadm -L` shows as
ActiveConn / InActConn.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from tidegate.lvs.frame import ACK, FIN, RST, SYN


class TcpState(IntEnum):
    NONE = 0
    ESTABLISHED = 1
    SYN_SENT = 2
    SYN_RECV = 3
    FIN_WAIT = 4
    TIME_WAIT = 5
    CLOSE = 6
    CLOSE_WAIT = 7
    LAST_ACK = 8
    LISTEN = 9
    SYNACK = 10


class Direction(IntEnum):
    INPUT = 0
    OUTPUT = 1
    INPUT_ONLY = 2


EV_SYN, EV_FIN, EV_ACK, EV_RST = 0, 1, 2, 3

_NO, _ES, _SS, _SR, _FW, _TW, _CL, _CW, _LA, _LI, _SA = (int(s) for s in TcpState)

# [direction][event] → next state, indexed by the current state (columns NO ES SS SR FW TW CL CW LA LI SA).
TABLE: tuple[tuple[tuple[int, ...], ...], ...] = (
    (  # INPUT
        (_SR, _ES, _ES, _SR, _SR, _SR, _SR, _SR, _SR, _SR, _SR),  # syn
        (_CL, _CW, _SS, _TW, _TW, _TW, _CL, _CW, _LA, _LI, _TW),  # fin
        (_CL, _ES, _SS, _ES, _FW, _TW, _CL, _CW, _CL, _LI, _ES),  # ack
        (_CL, _CL, _CL, _SR, _CL, _CL, _CL, _CL, _LA, _LI, _SR),  # rst
    ),
    (  # OUTPUT
        (_SS, _ES, _SS, _SR, _SS, _SS, _SS, _SS, _SS, _LI, _SR),  # syn
        (_TW, _FW, _SS, _TW, _FW, _TW, _CL, _TW, _LA, _LI, _TW),  # fin
        (_ES, _ES, _SS, _ES, _FW, _TW, _CL, _CW, _LA, _ES, _ES),  # ack
        (_CL, _CL, _SS, _CL, _CL, _TW, _CL, _CL, _CL, _CL, _CL),  # rst
    ),
    (  # INPUT_ONLY
        (_SR, _ES, _ES, _SR, _SR, _SR, _SR, _SR, _SR, _SR, _SR),  # syn
        (_CL, _FW, _SS, _TW, _FW, _TW, _CL, _CW, _LA, _LI, _TW),  # fin
        (_CL, _ES, _SS, _ES, _FW, _TW, _CL, _CW, _CL, _LI, _ES),  # ack
        (_CL, _CL, _CL, _SR, _CL, _CL, _CL, _CL, _LA, _LI, _CL),  # rst
    ),
)

# States in which a new SYN for the same 5-tuple starts a new connection (IPVS conn_reuse_mode):
# the old one is over, so the new one is scheduled afresh instead of following the old entry.
REUSABLE = frozenset({_FW, _TW, _CL, _CW, _LA})


def event(flags: int) -> int:
    """The event a TCP packet's flags stand for, or -1 for none (IPVS's tcp_state_idx)."""
    if flags & RST:
        return EV_RST
    if flags & SYN:
        return EV_SYN
    if flags & FIN:
        return EV_FIN
    if flags & ACK:
        return EV_ACK
    return -1


def next_state(state: int, flags: int, direction: Direction) -> int:
    ev = event(flags)
    if ev < 0:
        return state
    return TABLE[direction][ev][state]


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds an entry lives after its last packet, per state (IPVS's defaults)."""

    established: float = 900.0
    syn_sent: float = 120.0
    syn_recv: float = 60.0
    fin_wait: float = 120.0
    time_wait: float = 120.0
    close: float = 10.0
    close_wait: float = 60.0
    last_ack: float = 30.0
    listen: float = 120.0
    synack: float = 120.0
    none: float = 2.0
    udp: float = 300.0

    def by_state(self) -> tuple[float, ...]:
        """Timeouts indexed by TcpState value."""
        return (
            self.none,
            self.established,
            self.syn_sent,
            self.syn_recv,
            self.fin_wait,
            self.time_wait,
            self.close,
            self.close_wait,
            self.last_ack,
            self.listen,
            self.synack,
        )
