"""tidegate ctl: the admin API from the shell.

    tidegate ctl [--admin URL] [--token T] status [--pool P] [--json]
    tidegate ctl ... drain|enable|maint POOL ADDRESS
    tidegate ctl ... weight POOL ADDRESS N
    tidegate ctl ... add POOL ADDRESS [--weight N] [--meta KEY=VALUE ...]
    tidegate ctl ... remove POOL ADDRESS [--grace SECONDS]

--admin defaults to $TIDEGATE_ADMIN or http://127.0.0.1:9900, --token to $TIDEGATE_ADMIN_TOKEN.
A refused call prints the API's error and exits 1; an unreachable API exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

DEFAULT_ADMIN = "http://127.0.0.1:9900"


class CtlError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--admin", default=os.environ.get("TIDEGATE_ADMIN", DEFAULT_ADMIN), help="admin API URL")
    p.add_argument("--token", default=os.environ.get("TIDEGATE_ADMIN_TOKEN"), help="admin.token, if set")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per call (default 10)")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = sub.add_parser("status", help="every instance with its state and live figures")
    s.add_argument("--pool", help="only this pool")
    s.add_argument("--json", action="store_true", help="the raw GET /api/pools answer")
    for action, text in (
        ("drain", "no new work; in-flight work finishes"),
        ("enable", "back in rotation (through slow start)"),
        ("maint", "out of rotation until enabled"),
    ):
        a = sub.add_parser(action, help=text)
        a.add_argument("pool")
        a.add_argument("address")
    w = sub.add_parser("weight", help="set an instance's weight")
    w.add_argument("pool")
    w.add_argument("address")
    w.add_argument("weight", type=int)
    add = sub.add_parser("add", help="add an instance to a pool")
    add.add_argument("pool")
    add.add_argument("address")
    add.add_argument("--weight", type=int, default=1)
    add.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE")
    sub.add_parser(
        "self-upgrade",
        help="a new tidegate process from the code installed now takes over (as SIGUSR2); "
        "waits until it is current",
    )
    rm = sub.add_parser("remove", help="drain an instance, then remove it")
    rm.add_argument("pool")
    rm.add_argument("address")
    rm.add_argument("--grace", type=float, help="seconds in-flight work may take")


def call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    base = args.admin if "://" in args.admin else "http://" + args.admin
    url = base.rstrip("/") + path
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if args.token:
        req.add_header("Authorization", f"Bearer {args.token}")
    try:
        with urllib.request.urlopen(req, timeout=args.timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            message = json.loads(raw)["error"]
        except (ValueError, KeyError, TypeError):
            message = raw.decode(errors="replace").strip() or exc.reason
        raise CtlError(f"{method} {path}: {exc.code} {message}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CtlError(f"admin API at {base} unreachable: {reason}", 2) from None


def _instance_path(pool: str, address: str) -> str:
    return f"/api/pools/{quote(pool, safe='')}/instances/{quote(address, safe=':[]')}"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _status(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    path = f"/api/pools/{quote(args.pool, safe='')}" if args.pool else "/api/pools"
    _, doc = call(args, "GET", path)
    pools = [doc] if args.pool else doc["pools"]
    if args.json:
        print(json.dumps(doc if not args.pool else {"pools": pools}, indent=2))
        return 0
    styles = {"up": "green", "slow-start": "yellow", "draining": "cyan", "down": "red", "maint": "magenta"}
    table = Table(title=f"tidegate at {args.admin}", title_justify="left")
    for name, justify in (
        ("pool", "left"), ("instance", "left"), ("state", "left"), ("weight", "right"),
        ("conns", "right"), ("iops", "right"), ("requests", "right"), ("in", "right"),
        ("out", "right"), ("failures", "right"), ("retries", "right"),
    ):  # fmt: skip
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for p in pools:
        for i in p["instances"]:
            weight = str(i["weight"])
            if i["effective_weight"] != i["weight"]:
                weight += f" ({i['effective_weight']:.2f})"
            table.add_row(
                p["name"], i["address"], f"[{styles.get(i['state'], '')}]{i['state']}[/]", weight,
                str(i["connections"]), f"{i['iops']:.1f}", str(i["requests"]), _size(i["bytes_in"]),
                _size(i["bytes_out"]), str(i["failures"]), str(i["retries"]),
            )  # fmt: skip
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    console.print(table)
    return 0


def _summary(pool: str, doc: dict[str, Any]) -> str:
    return f"{pool} {doc['address']}: {doc['state']}, weight {doc['weight']}, {doc['connections']} in flight"


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "status":
            return _status(args)
        if args.action == "self-upgrade":
            args.timeout = max(args.timeout, 90.0)  # the new process starts and takes over first
            _, doc = call(args, "POST", "/api/self-upgrade")
            print(f"upgraded: pid {doc['pid']} is current; the old process drains and exits")
            return 0
        path = _instance_path(args.pool, args.address)
        if args.action in ("drain", "enable", "maint"):
            _, doc = call(args, "POST", f"{path}/{args.action}")
        elif args.action == "weight":
            _, doc = call(args, "PUT", f"{path}/weight", {"weight": args.weight})
        elif args.action == "add":
            meta = {}
            for item in args.meta:
                key, sep, value = item.partition("=")
                if not sep or not key:
                    raise CtlError(f"--meta wants KEY=VALUE, not {item!r}")
                meta[key] = value
            body: dict[str, Any] = {"address": args.address, "weight": args.weight}
            if meta:
                body["meta"] = meta
            _, doc = call(args, "POST", f"/api/pools/{quote(args.pool, safe='')}/instances", body)
            print(f"added {_summary(args.pool, doc)}")
            return 0
        else:  # remove
            query = f"?grace={args.grace:g}" if args.grace is not None else ""
            status, doc = call(args, "DELETE", path + query)
            print(
                ("removed " if status == 200 else "draining, removed once idle: ") + _summary(args.pool, doc)
            )
            return 0
        print(_summary(args.pool, doc))
        return 0
    except CtlError as exc:
        print(f"tidegate ctl: {exc}", file=sys.stderr)
        return exc.code
