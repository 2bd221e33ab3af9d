"""What the director reads from the kernel about its interface, routes and neighbours (pyroute2).

Blocking netlink calls: the engines run them in a worker thread (pyroute2's synchronous API runs an
event loop of its own and cannot run on the director's).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute

# Neighbour states worth trusting a MAC from (linux/neighbour.h): REACHABLE, STALE, DELAY, PROBE,
# PERMANENT, NOARP.
_USABLE_NUD = 0x02 | 0x04 | 0x08 | 0x10 | 0x80 | 0x40


class InterfaceError(Exception):
    pass


@dataclass(frozen=True)
class Interface:
    name: str
    index: int
    mac: bytes
    mtu: int
    addresses: tuple[str, ...]  # its IPv4 addresses

    @property
    def ipv4(self) -> bytes | None:
        return ipaddress.IPv4Address(self.addresses[0]).packed if self.addresses else None


def interface(name: str) -> Interface:
    base = Path("/sys/class/net") / name
    if not base.exists():
        raise InterfaceError(f"interface {name!r} does not exist here")
    mac = bytes.fromhex((base / "address").read_text().strip().replace(":", ""))
    mtu = int((base / "mtu").read_text())
    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname=name)[0]
        addrs = tuple(a.get("IFA_ADDRESS") for a in ipr.get_addr(index=index, family=2))
    if len(mac) != 6:
        raise InterfaceError(f"interface {name!r} is not Ethernet")
    return Interface(name, index, mac, mtu, addrs)


def forwarding(name: str) -> bool:
    path = Path("/proc/sys/net/ipv4/conf") / name / "forwarding"
    try:
        return path.read_text().strip() == "1"
    except OSError:
        return False


def is_local(ip: str) -> bool:
    """True when `ip` is configured on any interface of this network namespace."""
    with IPRoute() as ipr:
        return any(a.get("IFA_ADDRESS") == ip for a in ipr.get_addr(family=2))


def nexthop(ip: str) -> tuple[str, int | None]:
    """The next hop towards ip (itself when on-link) and the interface index the route uses."""
    with IPRoute() as ipr:
        try:
            route = ipr.route("get", dst=ip)[0]
        except Exception:
            return ip, None
        gw = route.get("RTA_GATEWAY")
        oif = route.get("RTA_OIF")
    return (gw or ip), oif


def neighbours(index: int) -> dict[bytes, bytes]:
    """The kernel's usable IPv4 neighbour entries on one interface: address → MAC."""
    out: dict[bytes, bytes] = {}
    with IPRoute() as ipr:
        for n in ipr.get_neighbours(family=2, ifindex=index):
            if not n["state"] & _USABLE_NUD:
                continue
            dst, lladdr = n.get("NDA_DST"), n.get("NDA_LLADDR")
            if dst and lladdr:
                out[ipaddress.IPv4Address(dst).packed] = bytes.fromhex(lladdr.replace(":", ""))
    return out
