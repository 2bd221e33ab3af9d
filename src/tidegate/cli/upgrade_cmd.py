"""tidegate upgrade --admin URL --pool NAME [--batch K] [--layer http|dns|lvs]

Rolling upgrade of a pool, one instance (or K) at a time: take it out of rotation, wait until it
has nothing in flight (http), no connections (lvs) or its DNS answers have expired from caches
(dns), restart it through its supervisor (the new process runs the code now on disk), wait until
it passes its health check `rise` times, put it back (slow start), go on. A failure stops the
rollout and says why; the pool keeps serving. Exit 0 only when every instance came back.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, Task, TaskID, TextColumn
from rich.text import Text

from tidegate.rollout.admin_client import AdminClient, AdminError
from tidegate.rollout.machine import InstanceRollout, Layer, Limits, Phase
from tidegate.rollout.plan import PlanError
from tidegate.rollout.runner import Upgrade

# The progress bar's steps, in order (the settle phase is named after what it waits for).
_STEPS = [
    Phase.WITHDRAW,
    Phase.SETTLE,
    Phase.RESTART,
    Phase.STARTING,
    Phase.HEALTH,
    Phase.READMIT,
    Phase.DONE,
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--admin", required=True, metavar="URL", help="the gateway's admin API, e.g. http://127.0.0.1:9900"
    )
    p.add_argument("--pool", required=True, help="the pool to upgrade")
    p.add_argument("--batch", type=int, default=1, metavar="K", help="instances upgraded at once (default 1)")
    p.add_argument(
        "--layer",
        choices=[x.value for x in Layer],
        default="http",
        help="how instances are taken out (default http)",
    )
    p.add_argument("--admin-token", default=os.environ.get("TIDEGATE_ADMIN_TOKEN"), help=argparse.SUPPRESS)
    p.add_argument("--rise", type=int, help="health checks to pass (default: the pool's health.rise)")
    p.add_argument(
        "--interval", type=float, help="seconds between checks (default: the pool's health.interval)"
    )
    p.add_argument(
        "--settle-timeout", type=float, default=60.0, help="seconds for in-flight/connections to reach 0"
    )
    p.add_argument(
        "--restart-timeout", type=float, default=60.0, help="seconds for the new process to listen"
    )
    p.add_argument(
        "--health-timeout", type=float, default=30.0, help="seconds for the new process to pass its checks"
    )
    p.add_argument("--dns-grace", type=float, default=1.0, help="seconds added to the max TTL (--layer dns)")


class _Elapsed(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.fields.get('elapsed', 0.0):5.1f} s", style="progress.elapsed")


def _phase_name(rollout: InstanceRollout) -> str:
    if rollout.phase is Phase.SETTLE:
        return {Layer.HTTP: "wait in-flight", Layer.LVS: "wait connections", Layer.DNS: "wait TTL"}[
            rollout.layer
        ]
    return rollout.phase.value


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_upgrade(args))


async def _upgrade(args: argparse.Namespace) -> int:
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    limits = Limits(
        settle_timeout=args.settle_timeout,
        restart_timeout=args.restart_timeout,
        health_timeout=args.health_timeout,
    )
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.fields[address]:<22}"),
        BarColumn(bar_width=20),
        TextColumn("{task.fields[phase]:<16} {task.fields[status]}"),
        _Elapsed(),
        console=console,
        transient=False,
    )
    tasks: dict[str, TaskID] = {}
    phases: dict[str, Phase] = {}
    notes_seen: dict[str, int] = {}

    def on_update(r: InstanceRollout) -> None:
        if r.address not in tasks:
            tasks[r.address] = progress.add_task(
                "", total=len(_STEPS), address=r.address, phase="waiting", status="", elapsed=0.0
            )
            notes_seen[r.address] = 0
        task_id = tasks[r.address]
        step = _STEPS.index(r.phase) + (r.phase is Phase.DONE) if r.phase in _STEPS else 0
        elapsed = time.monotonic() - r.started_at if r.started_at else 0.0
        progress.update(task_id, completed=step, phase=_phase_name(r), status=r.status, elapsed=elapsed)
        for note in r.notes[notes_seen[r.address] :]:
            progress.console.print(f"  {r.address}  {note}")
        notes_seen[r.address] = len(r.notes)
        if phases.get(r.address) is not r.phase and r.phase is Phase.FAILED and r.outcome is not None:
            progress.console.print(f"[red]  {r.outcome.message}[/red]")
        phases[r.address] = r.phase

    async with AdminClient(args.admin, args.admin_token) as admin:
        upgrade = Upgrade(
            admin,
            args.pool,
            layer=Layer(args.layer),
            batch=args.batch,
            limits=limits,
            rise=args.rise,
            interval=args.interval,
            dns_grace=args.dns_grace,
            on_update=on_update,
        )
        try:
            plan = await upgrade.plan()
        except (AdminError, PlanError) as exc:
            console.print(f"tidegate upgrade: {exc}")
            return 2
        count = sum(len(b) for b in plan.batches)
        how = {
            Layer.HTTP: "drain at the gateway, wait for in-flight requests to finish",
            Layer.LVS: "quiesce (weight 0), wait for the connection count to reach 0",
            Layer.DNS: f"withdraw from DNS answers, wait {plan.limits.dns_wait:g} s ({plan.limits.dns_why})",
        }[Layer(args.layer)]
        console.print(
            f"tidegate upgrade: pool {args.pool!r}: {count} instances in {len(plan.batches)} batches of "
            f"up to {args.batch}; {how}; then restart, {plan.limits.rise} health checks "
            f"{plan.limits.interval:g} s apart, readmit"
        )
        for address, why in plan.skipped:
            console.print(f"  skipping {address}: {why}")
        started = time.monotonic()
        with progress:
            outcome = await upgrade.run(plan)
        took = time.monotonic() - started
    for r in outcome.done:
        if r.version_before or r.version_after:
            console.print(f"  {r.address}: version {r.version_before or '?'} → {r.version_after or '?'}")
    if outcome.ok:
        console.print(f"tidegate upgrade: done: {outcome.message} in {took:.1f} s")
        return 0
    console.print(f"tidegate upgrade: FAILED: {outcome.message}")
    return 1
