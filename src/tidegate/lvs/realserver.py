"""The real-server side of DR and TUN, as steps a user can read (and `--apply` runs):

- the VIP as a /32 on `lo` (DR), on tunl0 (TUN with the kernel's ipip) or on a TUN device fed by
  tidegate's own decapsulator (TUN on kernels without ipip), so the server accepts packets for it;
- arp_ignore=1 and arp_announce=2 on `all` and the NIC, so it never answers ARP for the VIP nor
  uses it as the source of its own ARP: only the director may own the VIP on the segment;
- for TUN, rp_filter=0: packets come in on the tunnel from clients routed via the NIC.
For NAT nothing changes on the server but its route back to clients: via the director.

`--apply` is all or nothing: `preflight` checks what can be checked before anything changes (the
interface exists, the director is a neighbour), then `apply_all` runs the steps, each returning
how to undo what it changed (`Undo`; nothing when the host already had it); a step that fails
undoes the ones before it, in reverse. The undo records are saved (`save_undo`), and `--undo`
replays them: the host is back as it was before `--apply`.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
from collections.abc import Callable, Sequence
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


class SetupError(Exception):
    """What stops the set-up, said for a user (no traceback)."""


@dataclass(frozen=True)
class Undo:
    """How to take back what one applied step changed."""

    command: str  # what a user would type
    kind: str  # "sysctl" | "addr-del" | "link-down" | "route"
    args: tuple[str, ...]


def preflight(mode: str, interface: str, director: str | None) -> None:
    """What must hold before anything changes; SetupError says what does not."""
    if mode in ("dr", "tun") and not Path("/sys/class/net", interface).exists():
        raise SetupError(f"no network interface {interface!r} here (give the NIC facing the director: --interface)")
    if mode == "nat" and director:
        try:
            ipaddress.IPv4Address(director)
        except ValueError:
            raise SetupError(f"--director {director!r} is not an IPv4 address") from None
        via = _route_to(director)
        if via is not None:
            raise SetupError(
                f"--director {director} is not on a network of this host (reached via {via}): the real "
                "servers' default route must point at the director itself"
            )


def _route_to(address: str) -> str | None:
    """None when `address` is on a connected network, else the gateway it is reached through."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        try:
            routes = ipr.route("get", dst=address)
        except NetlinkError as exc:
            raise SetupError(f"--director {address} is unreachable from here: {os.strerror(exc.code)}") from None
    gateway = routes[0].get_attr("RTA_GATEWAY") if routes else None
    return str(gateway) if gateway else None


def read_sysctl(key: str) -> str:
    return Path("/proc/sys", *key.split(".")).read_text().strip()


def apply_sysctl(key: str, value: str) -> None:
    Path("/proc/sys", *key.split(".")).write_text(value)


def _default_gateway() -> str | None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        for route in ipr.get_default_routes(family=2):
            gateway = route.get_attr("RTA_GATEWAY")
            if gateway:
                return str(gateway)
    return None


def apply(step: Step) -> Undo | None:
    """Run one step (not `decap`, which the command runs itself since it must keep running);
    how to undo what it changed, or None when the host already had it."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    if step.kind == "sysctl":
        key, value = step.args
        old = read_sysctl(key)
        if old == value:
            return None
        apply_sysctl(key, value)
        return Undo(f"sysctl -w {key}={old}", "sysctl", (key, old))
    if step.kind == "link-up":
        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=step.args[0])[0]
            if ipr.get_links(index)[0]["flags"] & 1:  # IFF_UP
                return None
            ipr.link("set", index=index, state="up")
        return Undo(f"ip link set {step.args[0]} down", "link-down", step.args)
    if step.kind == "addr":
        vip, device = step.args
        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=device)[0]
            ipr.link("set", index=index, state="up")
            try:
                ipr.addr("add", index=index, address=vip, prefixlen=32)
            except NetlinkError as exc:
                if exc.code == errno.EEXIST:  # already there: not ours to take away
                    return None
                raise
        return Undo(f"ip addr del {vip}/32 dev {device}", "addr-del", (vip, device))
    if step.kind == "route":
        gateway = _default_gateway()
        if gateway == step.args[0]:
            return None
        with IPRoute() as ipr:
            ipr.route("replace", dst="0.0.0.0/0", gateway=step.args[0])
        back = f"ip route replace default via {gateway}" if gateway else "ip route del default"
        return Undo(back, "route", (gateway or "",))
    if step.kind == "decap":
        return None
    raise ValueError(step.kind)  # pragma: no cover


def undo(record: Undo) -> None:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    if record.kind == "sysctl":
        apply_sysctl(*record.args)
        return
    with IPRoute() as ipr:
        if record.kind == "link-down":
            links = ipr.link_lookup(ifname=record.args[0])
            if links:
                ipr.link("set", index=links[0], state="down")
        elif record.kind == "addr-del":
            vip, device = record.args
            links = ipr.link_lookup(ifname=device)
            if links:
                try:
                    ipr.addr("del", index=links[0], address=vip, prefixlen=32)
                except NetlinkError as exc:
                    if exc.code != errno.EADDRNOTAVAIL:  # gone already (a TUN device closed)
                        raise
        elif record.kind == "route":
            if record.args[0]:
                ipr.route("replace", dst="0.0.0.0/0", gateway=record.args[0])
            else:
                ipr.route("del", dst="0.0.0.0/0")
        else:  # pragma: no cover
            raise ValueError(record.kind)


def _reason(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    if isinstance(code, int) and code > 0 and type(exc).__name__ == "NetlinkError":
        return os.strerror(code)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def undo_all(records: Sequence[Undo], run: Callable[[Undo], None] = undo) -> list[str]:
    """Undo in reverse order; the problems met (each one skipped, the rest still undone)."""
    problems = []
    for record in reversed(records):
        try:
            run(record)
        except Exception as exc:
            problems.append(f"{record.command}: {_reason(exc)}")
    return problems


def apply_all(
    steps: Sequence[Step],
    run: Callable[[Step], Undo | None] = apply,
    take_back: Callable[[Undo], None] = undo,
) -> list[Undo]:
    """Every step, or none: a step that fails undoes those before it (SetupError says which
    failed, why, and whether the undoing went cleanly)."""
    done: list[Undo] = []
    for step in steps:
        try:
            record = run(step)
        except Exception as exc:
            problems = undo_all(done, take_back)
            back = f"undid the {len(done)} change(s) made before it" if done else "nothing had changed"
            if problems:
                back += "; but could not undo: " + "; ".join(problems)
            raise SetupError(f"{step.command}: {_reason(exc)}; {back}") from None
        if record is not None:
            done.append(record)
    return done


def save_undo(path: Path, records: Sequence[Undo]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = [{"command": r.command, "kind": r.kind, "args": list(r.args)} for r in records]
    path.write_text(json.dumps(doc, indent=1) + "\n")


def load_undo(path: Path) -> list[Undo]:
    try:
        doc = json.loads(path.read_text())
        return [Undo(d["command"], d["kind"], tuple(d["args"])) for d in doc]
    except FileNotFoundError:
        raise SetupError(f"nothing to undo: {path} does not exist (was --apply run with this --state?)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise SetupError(f"{path} is not what --apply saved: {exc}") from None


def state_path(vip: str) -> Path:
    return Path("/run/tidegate", f"lvs-realserver-{vip}.json")


def is_root() -> bool:
    return os.geteuid() == 0
