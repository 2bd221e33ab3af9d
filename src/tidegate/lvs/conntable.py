"""The director's connection table: which real server each connection goes to, and for how long.

Theory of operation: an entry is keyed by the bytes of the client's 5-tuple as seen on the wire
(source and destination address, source and destination port; one protocol per service), so that
every packet of a connection reaches the real server its first packet was scheduled to, whatever
the scheduler decides for later connections, and whatever happens to weights meanwhile (a real
server quiesced to weight 0 keeps its connections). In NAT the replies are found through a second
key, the real server's 5-tuple. TCP entries follow tcp_state.py; UDP entries live `udp` seconds
after their last packet.

Expiry is a timer wheel of one-second buckets, lazy: a packet only moves an entry's deadline; the
bucket that comes due checks each entry's deadline and either forgets it or files it again. An
entry whose deadline moves *earlier* (a FIN after ESTABLISHED) is filed again at once, so nothing
lives past its timeout by more than a second.

Figures per real server (RsStats) are what `ipvsadm -L --stats` shows, and the instance's
`counters.active` is kept equal to its ActiveConn, so that least-connection schedulers and the
upgrade orchestrator (waiting for connections to reach 0) see the director's truth.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator

from tidegate.balancing.instance import Instance
from tidegate.lvs.tcp_state import Direction, TcpState, Timeouts, next_state

_ES = int(TcpState.ESTABLISHED)


class RsStats:
    """One real server's figures, like a line of `ipvsadm -L --stats` plus ActiveConn/InActConn."""

    __slots__ = ("active", "conns", "in_bytes", "in_packets", "inactive", "out_bytes", "out_packets")

    def __init__(self) -> None:
        self.conns = 0  # connections scheduled to it, ever
        self.active = 0
        self.inactive = 0
        self.in_packets = 0
        self.out_packets = 0
        self.in_bytes = 0
        self.out_bytes = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class Conn:
    __slots__ = ("bucket", "client_mac", "dead", "expires", "inst", "key", "rkey", "state", "stats", "udp")

    def __init__(
        self, key: bytes, inst: Instance, stats: RsStats, udp: bool, rkey: bytes | None, client_mac: bytes
    ):
        self.key = key
        self.rkey = rkey
        self.inst = inst
        self.stats = stats
        self.udp = udp
        self.state = int(TcpState.NONE)
        self.expires = 0.0
        self.bucket = 0
        self.client_mac = client_mac
        self.dead = False

    @property
    def active(self) -> bool:
        return self.udp or self.state == _ES

    def __repr__(self) -> str:
        state = "UDP" if self.udp else TcpState(self.state).name
        return f"Conn({self.inst.address}, {state}, expires={self.expires:.1f})"


class ConnTable:
    def __init__(self, timeouts: Timeouts | None = None) -> None:
        self.timeouts = timeouts or Timeouts()
        self._by_state = self.timeouts.by_state()
        self.conns: dict[bytes, Conn] = {}  # client-side key → entry (read directly on the hot path)
        self.replies: dict[bytes, Conn] = {}  # NAT: real-server-side key → entry
        self.stats: dict[Instance, RsStats] = {}
        self._buckets: dict[int, list[Conn]] = {}
        self._due: list[int] = []
        self.expired = 0

    def __len__(self) -> int:
        return len(self.conns)

    def __iter__(self) -> Iterator[Conn]:
        return iter(list(self.conns.values()))

    def stats_for(self, inst: Instance) -> RsStats:
        st = self.stats.get(inst)
        if st is None:
            st = self.stats[inst] = RsStats()
        return st

    # --- life of an entry -----------------------------------------------------------------
    def open(
        self,
        key: bytes,
        inst: Instance,
        now: float,
        *,
        udp: bool = False,
        rkey: bytes | None = None,
        client_mac: bytes = b"",
    ) -> Conn:
        """A new connection scheduled to `inst`; TCP entries start in NONE (feed the SYN next)."""
        old = self.conns.get(key)
        if old is not None:
            self.remove(old)
        st = self.stats_for(inst)
        conn = Conn(key, inst, st, udp, rkey, client_mac)
        st.conns += 1
        if udp:
            st.active += 1
            inst.counters.active += 1
            conn.expires = now + self.timeouts.udp
        else:
            st.inactive += 1
            conn.expires = now + self._by_state[conn.state]
        self.conns[key] = conn
        if rkey is not None:
            self.replies[rkey] = conn
        self._file(conn)
        return conn

    def tcp_packet(self, conn: Conn, flags: int, direction: Direction, now: float) -> int:
        """Move a TCP entry on by one packet's flags; returns the new state."""
        new = next_state(conn.state, flags, direction)
        if new != conn.state:
            if new == _ES:
                conn.stats.active += 1
                conn.stats.inactive -= 1
                conn.inst.counters.active += 1
            elif conn.state == _ES:
                conn.stats.active -= 1
                conn.stats.inactive += 1
                conn.inst.counters.active -= 1
            conn.state = new
        conn.expires = expires = now + self._by_state[new]
        if expires < conn.bucket - 1:
            self._file(conn)
        return new

    def udp_packet(self, conn: Conn, now: float) -> None:
        conn.expires = now + self.timeouts.udp

    def remove(self, conn: Conn) -> None:
        if conn.dead:
            return
        conn.dead = True
        if self.conns.get(conn.key) is conn:
            del self.conns[conn.key]
        if conn.rkey is not None and self.replies.get(conn.rkey) is conn:
            del self.replies[conn.rkey]
        if conn.active:
            conn.stats.active -= 1
            conn.inst.counters.active -= 1
        else:
            conn.stats.inactive -= 1
        conn.inst.counters.completed += 1

    # --- expiry ---------------------------------------------------------------------------
    def _file(self, conn: Conn) -> None:
        t = math.ceil(conn.expires)
        conn.bucket = t
        bucket = self._buckets.get(t)
        if bucket is None:
            self._buckets[t] = [conn]
            heapq.heappush(self._due, t)
        else:
            bucket.append(conn)

    def expire(self, now: float) -> int:
        """Forget every entry whose deadline has passed; returns how many."""
        n = 0
        due = self._due
        while due and due[0] <= now:
            t = heapq.heappop(due)
            for conn in self._buckets.pop(t, ()):
                if conn.dead or conn.bucket != t:
                    continue  # removed, or filed again in an earlier bucket
                if conn.expires <= now:
                    self.remove(conn)
                    n += 1
                else:
                    self._file(conn)
        self.expired += n
        return n

    def next_due(self) -> float | None:
        return float(self._due[0]) if self._due else None
