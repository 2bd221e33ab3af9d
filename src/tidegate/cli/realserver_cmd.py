"""`tidegate lvs-realserver`: the real-server side setup for LVS DR and TUN (and NAT's route).

Prints the steps; with --apply runs them, all or none (a failing step undoes the ones before it),
and saves how to undo them (--state); --undo puts the host back as it was. In TUN mode on a kernel
without the ipip module it then keeps running as the IPIP decapsulator (until SIGTERM/SIGINT),
feeding a TUN device that holds the VIP; it prints `tidegate: lvs-realserver ready` once the
server can take traffic. Whatever stops it is said in one line, exit status 2.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
from pathlib import Path
from typing import NoReturn

from tidegate.lvs import realserver


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=["dr", "tun", "nat"], help="required but with --undo")
    p.add_argument("--vip", required=True, help="the virtual IP (IPv4, no port)")
    p.add_argument("--interface", default="eth0", help="the NIC facing the director (default eth0)")
    p.add_argument("--director", help="NAT: the director's address, the servers' default route")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--apply", action="store_true", help="run the steps (root), not just print them")
    what.add_argument("--undo", action="store_true", help="take back what --apply changed (root)")
    p.add_argument(
        "--state",
        metavar="FILE",
        help="where --apply records how to undo (default /run/tidegate/lvs-realserver-VIP.json)",
    )
    p.add_argument(
        "--decap",
        choices=["auto", "kernel", "userspace"],
        default="auto",
        help="TUN: decapsulate in the kernel (ipip) or in this process (default: kernel when it can)",
    )


def _stop(signum: int, frame: object) -> NoReturn:
    raise SystemExit(0)


def _fail(text: str) -> int:
    print(f"tidegate lvs-realserver: {text}", file=sys.stderr, flush=True)
    return 2


def run(args: argparse.Namespace) -> int:
    vip = args.vip.rsplit(":", 1)[0] if args.vip.count(":") == 1 else args.vip
    state = Path(args.state) if args.state else realserver.state_path(vip)
    if args.undo:
        return _undo(state)
    if args.mode is None:
        return _fail("--mode is required (dr, tun or nat)")
    kernel_ipip = args.decap == "kernel" or (args.decap == "auto" and realserver.kernel_has_ipip())
    try:
        steps = realserver.plan(
            args.mode, vip, args.interface, kernel_ipip=kernel_ipip, director=args.director
        )
    except ValueError as exc:
        return _fail(str(exc))
    if args.mode == "nat" and not steps:
        print("# NAT: nothing to set up on the real server but its route back to clients via the director")
        print("# (give --director ADDRESS to print or apply it)")
    for step in steps:
        print(step.command, flush=True)
    if not args.apply:
        return 0
    if not realserver.is_root():
        return _fail("--apply needs root")
    try:
        realserver.preflight(args.mode, args.interface, args.director)
    except realserver.SetupError as exc:
        return _fail(f"{exc}; nothing changed")
    decap = next((s for s in steps if s.kind == "decap"), None)
    tun_fd = None
    if decap is not None:
        from tidegate.lvs.decap import open_tun

        try:
            tun_fd, _ = open_tun(decap.args[0])  # the device must exist before its address goes on
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                return _fail(
                    f"TUN device {decap.args[0]} is busy: another decapsulator (a tidegate lvs-realserver "
                    "--mode tun) already runs on this host; nothing changed"
                )
            return _fail(f"cannot open TUN device {decap.args[0]}: {exc.strerror or exc}; nothing changed")
    try:
        records = realserver.apply_all(steps)
        realserver.save_undo(state, records)
    except realserver.SetupError as exc:
        if tun_fd is not None:
            os.close(tun_fd)
        return _fail(str(exc))
    except OSError as exc:  # the record could not be saved: take the changes back too
        problems = realserver.undo_all(records)
        if tun_fd is not None:
            os.close(tun_fd)
        extra = ("; could not undo: " + "; ".join(problems)) if problems else ""
        return _fail(f"cannot save {state}: {exc.strerror or exc}; the changes were undone{extra}")
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


def _undo(state: Path) -> int:
    if not realserver.is_root():
        return _fail("--undo needs root")
    try:
        records = realserver.load_undo(state)
    except realserver.SetupError as exc:
        return _fail(str(exc))
    for record in reversed(records):
        print(record.command, flush=True)
    problems = realserver.undo_all(records)
    if problems:
        return _fail("could not undo: " + "; ".join(problems) + f" (kept {state})")
    state.unlink()
    print("tidegate: lvs-realserver undone", file=sys.stderr, flush=True)
    return 0
