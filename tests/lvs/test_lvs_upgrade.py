"""`tidegate upgrade --layer lvs` with the real servers on hosts of their own (network namespaces):
each real server's `tidegate serve` listens for control on its own address (`--control-listen`)
and registers itself with the director by the address the director reaches it by (`--advertise`);
the upgrade runs on a third host (the client's namespace) and reaches the director's admin API
and every supervisor over the network, none of them on its loopback."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pytest

from tidegate.testing.instance_app import app_writer
from tidegate.testing.netns import DIRECTOR_IP, VIP, Topology, can_make_namespaces
from tidegate.testing.process import Proc

pytestmark = pytest.mark.netns
_REASON = can_make_namespaces()
ADMIN = f"{DIRECTOR_IP}:9900"


def director_config(topo: Topology) -> str:
    insts = ", ".join(f'{{ address = "{ip}:80" }}' for ip in topo.server_ips)
    return f"""
[admin]
listen = "{ADMIN}"
[[pools]]
name = "web"
instances = [ {insts} ]
[pools.health]
type = "http"
path = "/healthz"
interval = "0.2s"
timeout = "3s"
rise = 1
fall = 2
[lvs]
mode = "dr"
vip = "{VIP}:80"
interface = "eth0"
pool = "web"
"""


def versions(topo: Topology, n: int) -> Counter[str]:
    """n requests to the VIP from the client, one connection each: the versions that answered."""
    res = topo.run(topo.client, ["curl", "-sS", "-m", "5", "-H", "Connection: close", *[f"http://{VIP}/"] * n])
    assert res.returncode == 0, res.stderr
    return Counter(json.loads("{" + doc)["version"] for doc in res.stdout.split("{")[1:])


@pytest.mark.skipif(_REASON is not None, reason=str(_REASON))
def test_an_lvs_layer_upgrade_reaches_supervisors_on_other_hosts(tmp_path: Path) -> None:
    write = app_writer(tmp_path)
    env = write("1")
    with Topology("dr", servers=2) as topo:
        for ns in topo.servers:
            setup = topo.python(ns, "-m", "tidegate", "lvs-realserver", "--mode", "dr", "--vip", VIP,
                                "--apply", "--state", str(tmp_path / f"undo-{ns}.json"))  # fmt: skip
            setup.wait_for("lvs-realserver ready")
        config = tmp_path / "director.toml"
        config.write_text(director_config(topo))
        director = topo.python(topo.director, "-m", "tidegate", "run", str(config))
        director.wait_for("tidegate: ready")
        supervisors = []
        for ns, ip in zip(topo.servers, topo.server_ips, strict=True):
            argv = [sys.executable, "-m", "tidegate", "serve", "tgapp:app", "--host", "0.0.0.0", "--port", "80",
                    "--control-listen", "0.0.0.0:0", "--advertise", ip, "--register", f"http://{ADMIN}",
                    "--pool", "web", "--drain-window", "0.2"]  # fmt: skip
            proc = Proc(topo.argv(ns, argv), env=env)
            topo.procs.append(proc)  # stopped (and its namespace emptied) by topo.close()
            proc.wait_for(rf"registered {ip}:80 in pool 'web'")
            proc.wait_for(r"tidegate: ready")
            supervisors.append(proc)
        assert versions(topo, 4) == {"1": 4}

        write("2")  # the new code on disk
        command = [sys.executable, "-m", "tidegate", "upgrade", "--admin", f"http://{ADMIN}", "--pool", "web"]
        upgrade = topo.run(topo.client, [*command, "--layer", "lvs"], timeout=120)
        assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr + director.output()
        for proc, ip in zip(supervisors, topo.server_ips, strict=True):
            proc.wait_for(r"\[0\.0\.0\.0:80\] tidegate: instance listening on 0\.0\.0\.0:80 pid=\d+ version=2")
            assert ip in upgrade.stdout + upgrade.stderr
        assert versions(topo, 4) == {"2": 4}
        for proc in supervisors:
            assert proc.stop() == 0
