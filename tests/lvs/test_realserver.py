"""`tidegate lvs-realserver --apply/--undo` in a network namespace of its own: all or nothing, one
clear line and exit 2 for what stops it, and --undo puts the namespace back as it was."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tidegate.lvs import realserver
from tidegate.lvs.realserver import SetupError, Step, Undo
from tidegate.testing.netns import VIP, can_make_namespaces, ip
from tidegate.testing.process import Proc, child_env

NAMESPACES = pytest.mark.skipif(can_make_namespaces() is not None, reason=str(can_make_namespaces()))
SYSCTLS = [
    f"net.ipv4.conf.{dev}.{key}"
    for dev in ("all", "eth0")
    for key in ("arp_ignore", "arp_announce", "rp_filter")
]


@pytest.fixture
def ns() -> Iterator[str]:
    """A namespace with lo and a NIC `eth0` on 198.18.0.11/24 (a veth whose peer stays inside:
    this kernel has no dummy devices)."""
    name = f"tg{secrets.token_hex(3)}rs"
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "set", "lo", "up")
        ip("-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
        ip("-n", name, "link", "set", "peer0", "up")
        ip("-n", name, "addr", "add", "198.18.0.11/24", "dev", "eth0")
        ip("-n", name, "link", "set", "eth0", "up")
        yield name
    finally:
        res = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
        for pid in res.stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def argv(ns: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, sys.executable, "-m", "tidegate", "lvs-realserver", "--vip", VIP, *args]


def rs(ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv(ns, *args), capture_output=True, text=True, env=child_env(), timeout=60)


def snapshot(ns: str) -> dict[str, object]:
    """What lvs-realserver may change in the namespace."""

    def out(*cmd: str) -> str:
        return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, check=True).stdout

    return {
        "addresses": sorted(
            line.split()[3] + " " + line.split()[1] for line in out("ip", "-4", "-o", "addr").splitlines()
        ),
        "routes": out("ip", "-4", "route").strip(),
        **{k: out("sysctl", "-n", k).strip() for k in SYSCTLS},
    }


def assert_refused(res: subprocess.CompletedProcess[str], *words: str) -> None:
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    line = res.stderr.strip()
    assert line.startswith("tidegate lvs-realserver: ") and "\n" not in line, res.stderr
    for word in words:
        assert word in line, line


@NAMESPACES
def test_apply_then_undo_puts_the_namespace_back(ns: str, tmp_path: Path) -> None:
    state = str(tmp_path / "undo.json")
    before = snapshot(ns)
    res = rs(ns, "--mode", "dr", "--interface", "eth0", "--apply", "--state", state)
    assert res.returncode == 0, res.stderr
    applied = snapshot(ns)
    assert f"{VIP}/32 lo" in applied["addresses"]  # type: ignore[operator]
    assert applied["net.ipv4.conf.eth0.arp_ignore"] == "1" and applied["net.ipv4.conf.all.arp_announce"] == "2"

    res = rs(ns, "--undo", "--state", state)
    assert res.returncode == 0, res.stderr
    assert f"ip addr del {VIP}/32 dev lo" in res.stdout
    assert snapshot(ns) == before
    assert not Path(state).exists()
    assert_refused(rs(ns, "--undo", "--state", state), "nothing to undo")


@NAMESPACES
def test_a_missing_interface_is_one_line_and_changes_nothing(ns: str, tmp_path: Path) -> None:
    before = snapshot(ns)
    for mode in ("dr", "tun"):
        res = rs(ns, "--mode", mode, "--interface", "tgnone0", "--apply", "--state", str(tmp_path / "u"))
        assert_refused(res, "no network interface 'tgnone0'", "nothing changed")
    assert snapshot(ns) == before


@NAMESPACES
def test_a_bad_or_unreachable_director_is_one_line_and_changes_nothing(ns: str, tmp_path: Path) -> None:
    state = str(tmp_path / "undo.json")
    before = snapshot(ns)
    assert_refused(rs(ns, "--mode", "nat", "--director", "director.example", "--apply"), "not an IPv4 address")
    assert_refused(
        rs(ns, "--mode", "nat", "--director", "198.19.5.5", "--apply", "--state", state), "unreachable"
    )
    assert snapshot(ns) == before
    # a director on the NIC's network: the default route goes through it, and --undo removes it
    assert rs(ns, "--mode", "nat", "--director", "198.18.0.2", "--apply", "--state", state).returncode == 0
    assert "default via 198.18.0.2" in snapshot(ns)["routes"]  # type: ignore[operator]
    # ... now it is reached via that route: a director elsewhere is refused, the route stays
    assert_refused(rs(ns, "--mode", "nat", "--director", "198.19.5.5", "--apply"), "via 198.18.0.2")
    assert rs(ns, "--undo", "--state", state).returncode == 0
    assert snapshot(ns) == before


@NAMESPACES
def test_a_second_decapsulator_is_refused_and_the_first_runs_on(ns: str, tmp_path: Path) -> None:
    state = str(tmp_path / "undo.json")
    before = snapshot(ns)
    first = Proc(
        argv(ns, "--mode", "tun", "--decap", "userspace", "--interface", "eth0", "--apply", "--state", state),
        env=child_env(),
    )
    try:
        first.wait_for(r"lvs-realserver ready \(userspace IPIP decapsulator\)")
        running = snapshot(ns)
        assert f"{VIP}/32 {realserver.DECAP_DEVICE}" in running["addresses"]  # type: ignore[operator]
        second = str(tmp_path / "second.json")
        res = rs(ns, "--mode", "tun", "--decap", "userspace", "--interface", "eth0", "--apply", "--state", second)
        assert_refused(res, "busy", "another decapsulator", "nothing changed")
        assert snapshot(ns) == running and first.popen.poll() is None
    finally:
        first.stop()
    assert rs(ns, "--undo", "--state", state).returncode == 0  # the TUN device left with its process
    assert snapshot(ns) == before


def test_a_failing_step_undoes_the_ones_before_it_in_reverse() -> None:
    steps = [Step(f"step {i}", "sysctl", (str(i),)) for i in range(4)]
    undone: list[str] = []

    def run(step: Step) -> Undo | None:
        if step.args[0] == "2":
            raise PermissionError(1, "Operation not permitted")
        if step.args[0] == "1":
            return None  # the host already had it: nothing to take back
        return Undo(f"undo {step.command}", "sysctl", step.args)

    with pytest.raises(SetupError) as err:
        realserver.apply_all(steps, run, lambda r: undone.append(r.command))
    assert undone == ["undo step 0"]
    assert str(err.value) == "step 2: Operation not permitted; undid the 1 change(s) made before it"

    def fails_to_undo(record: Undo) -> None:
        raise FileNotFoundError(2, "No such file or directory")

    steps[3] = Step("step 3", "sysctl", ("3",))
    with pytest.raises(SetupError) as err:
        realserver.apply_all([steps[0], steps[3], steps[2]], run, fails_to_undo)
    assert "could not undo: undo step 3: No such file or directory; undo step 0: No such" in str(err.value)
