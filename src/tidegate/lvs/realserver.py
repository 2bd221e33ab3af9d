"""The real-server side of DR and TUN, as steps a user can read (and `--apply` runs):

- the VIP as a /32 on `lo` (DR), on tunl0 (TUN with the kernel's ipip) or on a TUN device fed by
  tidegate's own decapsulator (TUN on kernels without ipip), so the server accepts packets for it;
- arp_ignore=1 and arp_announce=2 on `all` and the NIC, so it never answers ARP for the VIP nor
  uses it as the source of its own ARP: only the director may own the VIP on the segment;
- for TUN, rp_filter=0: packets come in on the tunnel from clients routed via the NIC.
For NAT nothing changes on the server but its route back to clients: via the director.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

DECAP_DEVICE = "tlvs0"


@dataclass(frozen=True)
class Step:
    command: str  # what a user would type
    kind: str  # "sysctl" | "addr" | "link-up" | "route" | "decap"
    args: tuple[str, ...]


def _sysctl(key: str, value: str) -> Step:
    return Step(f"sysctl -w {key}={value}", "sysctl", (key, value))


def kernel_has_ipip() -> bool:
    return Path("/sys/class/net/tunl0").exists() or Path("/sys/module/ipip").exists()


def plan(
    mode: str, vip: str, interface: str, *, kernel_ipip: bool, director: str | None = None
) -> list[Step]:
    ipaddress.IPv4Address(vip)
    steps: list[Step] = []
    if mode == "nat":
        if director:
            steps.append(Step(f"ip route replace default via {director}", "route", (director,)))
        return steps
    if mode == "dr":
        device = "lo"
    elif kernel_ipip:
        device = "tunl0"
    else:
        device = DECAP_DEVICE
        steps.append(
            Step(
                f"# no ipip in this kernel: tidegate decapsulates IPIP into TUN device {device}",
                "decap",
                (device,),
            )
        )
    if device == "tunl0":
        steps.append(Step("ip link set tunl0 up", "link-up", ("tunl0",)))
    steps.append(Step(f"ip addr add {vip}/32 dev {device}", "addr", (vip, device)))
    for dev in ("all", interface):
        steps.append(_sysctl(f"net.ipv4.conf.{dev}.arp_ignore", "1"))
        steps.append(_sysctl(f"net.ipv4.conf.{dev}.arp_announce", "2"))
    if mode == "tun":
        for dev in ("all", interface, device):
            steps.append(_sysctl(f"net.ipv4.conf.{dev}.rp_filter", "0"))
    return steps


def apply_sysctl(key: str, value: str) -> None:
    Path("/proc/sys", *key.split(".")).write_text(value)


def apply(step: Step) -> None:
    """Run one step (not `decap`, which the command runs itself since it must keep running)."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    if step.kind == "sysctl":
        apply_sysctl(*step.args)
    elif step.kind == "link-up":
        with IPRoute() as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname=step.args[0])[0], state="up")
    elif step.kind == "addr":
        vip, device = step.args
        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=device)[0]
            ipr.link("set", index=index, state="up")
            try:
                ipr.addr("add", index=index, address=vip, prefixlen=32)
            except NetlinkError as exc:
                if exc.code != 17:  # EEXIST: already there
                    raise
    elif step.kind == "route":
        with IPRoute() as ipr:
            ipr.route("replace", dst="0.0.0.0/0", gateway=step.args[0])
    elif step.kind == "decap":
        pass
    else:  # pragma: no cover
        raise ValueError(step.kind)


def is_root() -> bool:
    return os.geteuid() == 0
