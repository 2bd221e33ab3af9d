"""A SIGHUP reload applies whole or not at all: whatever can fail (a listener that cannot bind, an
[lvs] that cannot run here, an access log that cannot be opened) refuses it before any section
changes — [[pools]], their health checks, [[http]], [[tcp]], [dns], [admin] and [registry] alike —
and the process serves on as before. The same file without the fault then applies every change,
so each observation below is shown to see a change when there is one."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import dns.message
import dns.query
import pytest

from tidegate.testing.backends import Backend
from tidegate.testing.netns import VIP, Topology, can_make_namespaces, write
from tidegate.testing.process import Proc

TOKEN = "s3cret"


@pytest.fixture
def backends() -> Iterator[tuple[Backend, Backend]]:
    with Backend("a") as a, Backend("b") as b:
        yield a, b


def config(
    a: Backend, b: Backend, *, changed: bool = False, admin: str = "127.0.0.1:0", extra: str = ""
) -> str:
    """The running config, or (changed) one that changes something in every section."""
    return f"""
[admin]
listen = "{admin}"
{f'token = "{TOKEN}"' if changed else ""}
{"[registry]" if changed else ""}
{'type = "etcd"' if changed else ""}
{'endpoints = ["http://127.0.0.1:9"]' if changed else ""}
[[pools]]
name = "one"
instances = [{{ address = "{a.address}", weight = {3 if changed else 1} }}]
[pools.health]
type = "tcp"
interval = "{"3s" if changed else "1s"}"
[[pools]]
name = "two"
instances = [{{ address = "{b.address}" }}]
[[http]]
listen = "127.0.0.1:0"
pool = "{"two" if changed else "one"}"
[[tcp]]
listen = "127.0.0.1:0"
pool = "{"two" if changed else "one"}"
{extra}
[dns]
listen = "127.0.0.1:0"
zone = "example.test."
nameservers = ["ns1.example.test."]
[[dns.records]]
name = "www.example.test."
pool = "one"
ttl = {9 if changed else 5}
"""


def reload(proc: Proc, text: str) -> str:
    proc.config_path.write_text(text)  # type: ignore[attr-defined]
    mark = len(proc.lines)
    proc.signal(signal.SIGHUP)
    return proc.wait_for_new(r"tidegate: reloaded|reload refused.*", mark).group(0)


def pool_doc(proc: Proc, token: str | None = None) -> dict:  # type: ignore[type-arg]
    req = urllib.request.Request("http://" + proc.listening["admin"] + "/api/pools/one")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def http_answer(addr: tuple[str, int]) -> bytes:
    conn = http.client.HTTPConnection(*addr, timeout=10)
    try:
        conn.request("GET", "/")
        return conn.getresponse().read()
    finally:
        conn.close()


def dns_ttl(addr: tuple[str, int]) -> int:
    answer = dns.query.udp(dns.message.make_query("www.example.test.", "A"), addr[0], port=addr[1], timeout=5)
    return int(answer.answer[0].ttl)


def observed(proc: Proc, token: str | None = None) -> dict[str, object]:
    doc = pool_doc(proc, token)
    return {
        "weight": doc["instances"][0]["weight"],
        "health interval": doc["health"]["check"]["interval"],
        "registry": "registry" in doc,
        "http": http_answer(proc.address("http")),
        "tcp": http_answer(proc.address("tcp")),
        "dns ttl": dns_ttl(proc.address("dns")),
    }


BEFORE = {"weight": 1, "health interval": 1.0, "registry": False, "http": b"a", "tcp": b"a", "dns ttl": 5}
AFTER = {"weight": 3, "health interval": 3.0, "registry": True, "http": b"b", "tcp": b"b", "dns ttl": 9}

LVS = '[lvs]\nvip = "198.18.0.100:80"\ninterface = "tgnone0"\npool = "one"\nengine = "userspace"\n'


@pytest.mark.parametrize(
    "fault",
    ["http listen", "tcp listen", "dns listen", "admin listen", "http access_log", "lvs interface"],
)
def test_a_reload_that_cannot_apply_whole_changes_no_section(
    fault: str, start_tidegate: Callable[..., Proc], backends: tuple[Backend, Backend]
) -> None:
    a, b = backends
    proc = start_tidegate(config(a, b))
    assert observed(proc) == BEFORE
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        faulty = {
            "http listen": config(a, b, changed=True, extra=f'[[http]]\nlisten = "{busy}"\npool = "one"\n'),
            "tcp listen": config(a, b, changed=True, extra=f'[[tcp]]\nlisten = "{busy}"\npool = "one"\n'),
            "dns listen": config(a, b, changed=True).replace(
                '[dns]\nlisten = "127.0.0.1:0"', f'[dns]\nlisten = "{busy}"'
            ),
            "admin listen": config(a, b, changed=True, admin=busy),
            "http access_log": config(a, b, changed=True).replace(
                'pool = "two"\n[[tcp]]',
                'pool = "two"\naccess_log = "/nonexistent/tidegate/access.log"\n[[tcp]]',
            ),
            "lvs interface": config(a, b, changed=True, extra=LVS),
        }[fault]
        said = reload(proc, faulty)
    assert said.startswith("reload refused, config unchanged"), proc.output()
    assert proc.popen.poll() is None
    assert observed(proc) == BEFORE, proc.output()  # no token asked for either: [admin] unchanged

    assert reload(proc, config(a, b, changed=True)) == "tidegate: reloaded"
    assert observed(proc, TOKEN) == AFTER


DIRECTOR = """
[admin]
listen = "127.0.0.1:0"
[[pools]]
name = "rs"
instances = [{{ address = "{rs}:80", weight = {weight} }}]
[pools.health]
type = "none"
[lvs]
vip = "{vip}:80"
interface = "{interface}"
pool = "rs"
engine = "userspace"
mode = "dr"
"""


@pytest.mark.netns
@pytest.mark.skipif(can_make_namespaces() is not None, reason=str(can_make_namespaces()))
def test_a_running_director_moved_to_an_interface_that_does_not_exist_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The case that exited the whole process with status 2: [lvs] interface changed to one that
    is not there. The reload is refused, the director runs on, nothing else changed."""
    with Topology("dr", servers=1) as topo:
        path = tmp_path / "director.toml"
        rs = topo.server_ips[0]
        write(path, DIRECTOR.format(rs=rs, weight=1, vip=VIP, interface="eth0"))
        proc = topo.python(topo.director, "-m", "tidegate", "run", str(path))
        proc.config_path = path  # type: ignore[attr-defined]
        proc.wait_for(r"tidegate: ready")

        def weight() -> int:
            code = (
                "import json, urllib.request; print(json.load(urllib.request.urlopen("
                f"'http://{proc.listening['admin']}/api/pools/rs', timeout=10))['instances'][0]['weight'])"
            )
            res = topo.run(topo.director, [sys.executable, "-c", code])
            assert res.returncode == 0, res.stderr
            return int(res.stdout)

        said = reload(proc, DIRECTOR.format(rs=rs, weight=2, vip=VIP, interface="tgnone0"))
        assert said.startswith("reload refused, config unchanged: the [lvs] section"), proc.output()
        assert "tgnone0" in said
        assert proc.popen.poll() is None
        assert weight() == 1
        assert not any("restarting the director" in line for line in proc.lines), proc.output()
        assert (
            reload(proc, DIRECTOR.format(rs=rs, weight=2, vip=VIP, interface="eth0")) == "tidegate: reloaded"
        )
        assert weight() == 2
        assert proc.stop() == 0
