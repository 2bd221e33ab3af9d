"""`tidegate lvs-realserver`: the real-server side setup for LVS DR and TUN (and NAT's route).

Prints the steps; with --apply runs them. In TUN mode on a kernel without the ipip module it then
keeps running as the IPIP decapsulator (until SIGTERM/SIGINT), feeding a TUN device that holds the
VIP; it prints `tidegate: lvs-realserver ready` once the server can take traffic.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import NoReturn

from tidegate.lvs import realserver


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=["dr", "tun", "nat"], required=True)
    p.add_argument("--vip", required=True, help="the virtual IP (IPv4, no port)")
    p.add_argument("--interface", default="eth0", help="the NIC facing the director (default eth0)")
    p.add_argument("--director", help="NAT: the director's address, the servers' default route")
    p.add_argument("--apply", action="store_true", help="run the steps (root), not just print them")
    p.add_argument(
        "--decap",
        choices=["auto", "kernel", "userspace"],
        default="auto",
        help="TUN: decapsulate in the kernel (ipip) or in this process (default: kernel when it can)",
    )


def _stop(signum: int, frame: object) -> NoReturn:
    raise SystemExit(0)


def run(args: argparse.Namespace) -> int:
    vip = args.vip.rsplit(":", 1)[0] if args.vip.count(":") == 1 else args.vip
    kernel_ipip = args.decap == "kernel" or (args.decap == "auto" and realserver.kernel_has_ipip())
    try:
        steps = realserver.plan(
            args.mode, vip, args.interface, kernel_ipip=kernel_ipip, director=args.director
        )
    except ValueError as exc:
        print(f"tidegate lvs-realserver: {exc}", file=sys.stderr)
        return 2
    if args.mode == "nat" and not steps:
        print("# NAT: nothing to set up on the real server but its route back to clients via the director")
        print("# (give --director ADDRESS to print or apply it)")
    for step in steps:
        print(step.command, flush=True)
    if not args.apply:
        return 0
    if not realserver.is_root():
        print("tidegate lvs-realserver: --apply needs root", file=sys.stderr)
        return 2
    decap = next((s for s in steps if s.kind == "decap"), None)
    tun_fd = None
    if decap is not None:
        from tidegate.lvs.decap import open_tun

        tun_fd, _ = open_tun(decap.args[0])  # the device must exist before its address goes on
    for step in steps:
        realserver.apply(step)
    if tun_fd is None:
        print("tidegate: lvs-realserver ready", file=sys.stderr, flush=True)
        return 0
    from tidegate.lvs.decap import Decapsulator
    from tidegate.lvs.frame import ip4

    dec = Decapsulator(ip4(vip), tun_fd)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print("tidegate: lvs-realserver ready (userspace IPIP decapsulator)", file=sys.stderr, flush=True)
    try:
        dec.run()
    finally:
        dec.close()
        print(f"tidegate: lvs-realserver decapsulated {dec.packets} packets", file=sys.stderr, flush=True)
    return 0
