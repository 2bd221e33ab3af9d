"""A real `tidegate run` gateway in front of fault-injecting instances, and a plain client."""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import count

import pytest

from tidegate.testing.faults import FaultInstance, Mode
from tidegate.testing.process import Proc

IDEMPOTENT = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE")
NOT_IDEMPOTENT = ("POST", "PATCH")
METHODS = IDEMPOTENT + NOT_IDEMPOTENT
_names = count()


def gateway_config(
    addresses: Sequence[str],
    *,
    tries: int = 3,
    budget: float = 0.2,
    connect_timeout: str = "300ms",
    response_timeout: str = "2s",
    spool_dir: str | None = None,
    body_in_memory: str = "1MiB",
    routes: str = "",
    outlier: int = 0,
    ejection: str = "30s",
    max_body: str = "1GiB",
) -> str:
    """One pool "web" of `addresses`, no active health checks, passive ejection off by default
    (so a fault instance stays in rotation and every method meets it), access log on stdout."""
    instances = ", ".join(f'{{ address = "{a}" }}' for a in addresses)
    spool = f'spool_dir = "{spool_dir}"\n' if spool_dir else ""
    return f"""
[[pools]]
name = "web"
instances = [ {instances} ]
[pools.outlier]
consecutive_failures = {outlier}
ejection = "{ejection}"

[[http]]
listen = "127.0.0.1:0"
pool = "web"
access_log = "-"
{routes}
[http.limits]
upstream_connect_timeout = "{connect_timeout}"
upstream_response_timeout = "{response_timeout}"
body_in_memory = "{body_in_memory}"
max_body_bytes = "{max_body}"
{spool}
[http.retry]
tries = {tries}
budget = {budget}
statuses = [502, 503, 504]
"""


@dataclass
class Result:
    status: int | None  # None: no status line came back
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    cut: bool = False  # the connection broke before the response was complete

    def json(self) -> dict[str, object]:
        return json.loads(self.body)  # type: ignore[no-any-return]


class Gateway:
    def __init__(self, proc: Proc) -> None:
        self.proc = proc
        self.host, self.port = proc.address("http")

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 20.0,
    ) -> Result:
        """One request on a fresh connection; a broken answer is a Result, not an exception."""
        c = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            try:
                c.request(method, path, body=body, headers=headers or {})
                r = c.getresponse()
            except (http.client.RemoteDisconnected, ConnectionError):
                return Result(None, cut=True)
            res = Result(r.status, {k.lower(): v for k, v in r.getheaders()})
            try:
                res.body = r.read()
            except (http.client.IncompleteRead, ConnectionError):
                res.cut = True
            return res
        finally:
            c.close()

    def log_entry(self, path: str, timeout: float = 10.0) -> dict[str, object]:
        """The access-log entry of the request for `path` (waits for the line)."""
        m = self.proc.wait_for(r'^\{.*"path":"' + re.escape(path) + r'".*\}$', timeout)
        return json.loads(m.group(0))  # type: ignore[no-any-return]


@pytest.fixture
def gateway(start_tidegate: Callable[..., Proc]) -> Callable[..., Gateway]:
    def start(addresses: Sequence[str], **cfg: object) -> Gateway:
        text = gateway_config(addresses, **cfg)  # type: ignore[arg-type]
        return Gateway(start_tidegate(text, name=f"gateway-{next(_names)}.toml"))

    return start


@pytest.fixture
def instances() -> Iterator[Callable[..., FaultInstance]]:
    """instances(mode, **kw) → a FaultInstance closed at the end of the test."""
    made: list[FaultInstance] = []

    def make(mode: Mode | str = Mode.ECHO, **kw: object) -> FaultInstance:
        inst = FaultInstance(mode, **kw)  # type: ignore[arg-type]
        made.append(inst)
        return inst

    yield make
    for inst in made:
        inst.close()
