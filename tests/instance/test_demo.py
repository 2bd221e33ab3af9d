"""`tidegate demo`, as the README's first command runs it (with its ports moved out of the way)."""

from __future__ import annotations

import json
import re
import urllib.request
from typing import Any

from tidegate.testing.process import tidegate


def get(url: str) -> tuple[str, dict[str, str]]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode(), dict(resp.headers)


def get_json(url: str) -> Any:
    return json.loads(get(url)[0])


def test_demo_serves_round_robin_over_three_instances_and_stops_on_ctrl_c() -> None:
    demo = tidegate(
        "demo", "--duration", "30", "--gateway-port", "0", "--admin-port", "0", "--instance-port", "0"
    )
    try:
        demo.wait_for(r"tidegate: ready", timeout=30)
        gateway = demo.wait_for(r"gateway +(http://\S+/)").group(1)
        admin = demo.wait_for(r"dashboard +(http://\S+)/").group(1)
        hint = demo.wait_for(r"echo 2 > (\S+) && \S*tidegate upgrade --admin (\S+) --pool (\S+)")

        # A plain GET to the printed URL answers; six in a row go round the three instances twice.
        answers = [get(gateway)[0] for _ in range(6)]
        who = [re.match(r"hello from (\S+) \(version 1, pid \d+\)", a).group(1) for a in answers]  # type: ignore[union-attr]
        assert len(set(who)) == 3 and who[:3] == who[3:], answers

        # The upgrade hint names this demo's admin API and a pool whose instances it can restart.
        assert hint.group(2) == admin and hint.group(3) == "demo"
        pools = get_json(admin + "/api/pools")
        pool = next(p for p in (pools["pools"] if isinstance(pools, dict) else pools) if p["name"] == "demo")
        supervisors = {i["meta"].get("supervisor") for i in pool["instances"]}
        assert len(supervisors) == 1 and None not in supervisors
        supervised = get_json(supervisors.pop() + "/instances")
        assert sorted(i["address"] for i in supervised) == sorted(set(who))
        dashboard, _ = get(admin + "/")
        assert "<html" in dashboard.lower()

        demo.signal(2)  # Ctrl-C
        assert demo.popen.wait(30) == 0
        demo.wait_for(r"tidegate demo: stopping")
    finally:
        demo.stop()
