"""Each fault of docs/architecture.md's retry table, through a real gateway: which methods succeed via a
retry and which get 502/504 (or the cut / passed-through answer the table implies).

Every pool is [fault, echo] (drain: several of each) under round-robin, with passive ejection
off so the fault stays in rotation. A request "met the fault" when the fault instance saw it (or,
for faults no instance can see — refused and timed-out connects — when the access log says it
took two tries); each method is sent until one request met the fault, then that request's answer
is checked against EXPECTED, which is the table written out for these faults.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tidegate.testing.faults import FaultInstance, Mode

Gateway = Any  # conftest.Gateway: test modules cannot import conftest under importlib mode
IDEMPOTENT = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE")
METHODS = (*IDEMPOTENT, "POST", "PATCH")

OK, CUT = "ok", "cut"
# fault → (answer for idempotent methods, answer for POST / PATCH)
EXPECTED: dict[Mode | str, tuple[object, object]] = {
    "refused": (OK, OK),  # could not connect: any method
    Mode.BLACKHOLE: (OK, OK),  # connect timeout: any method
    Mode.DRAIN: (OK, OK),  # drain signal: any method
    Mode.KEEPALIVE_CLOSE: (OK, 502),  # reused keep-alive connection closed: idempotent only (retry.py)
    Mode.CLOSE: (OK, 502),  # lost after the request was sent: idempotent only
    Mode.SLOW: (OK, 504),  # no response within the timeout: idempotent only
    Mode.STATUS: (OK, 503),  # a configured status: idempotent only, else passed through
    Mode.RESET: (CUT, CUT),  # a response byte went out: never
    Mode.HEAD_ONLY: (OK, 502),  # a short body's head, then lost: held, so as CLOSE (upstream.py)
}
ATTEMPTS = 8  # requests per method, at most, until one meets the fault


def met_fault(fault: FaultInstance, path: str, gw: Gateway, mode: Mode | str) -> bool:
    if mode in ("refused", Mode.BLACKHOLE):
        return gw.log_entry(path)["tries"] == 2
    seen = [s for s in fault.requests() if s.path == path]
    if mode is Mode.KEEPALIVE_CLOSE:
        # Only a request sent on a reused connection meets this fault.
        return any(s.index_on_connection > 0 and not s.answered for s in seen)
    return bool(seen)


def check(mode: Mode | str, method: str, res: Any, echo_saw: int, path: str) -> None:
    want = EXPECTED[mode][0 if method in IDEMPOTENT else 1]
    where = f"{mode} {method} {path}"
    if want == OK:
        assert res.status == 200 and not res.cut, where
        assert echo_saw == 1, where  # answered by a retry, exactly once
        if method != "HEAD":
            assert res.json()["path"] == path, where
    elif want == CUT:
        assert res.cut, where  # the answer was cut, not replaced...
        assert echo_saw == 0, where  # ...and never retried
    else:
        assert res.status == want and not res.cut, where
        assert echo_saw == 0, where
        assert "tidegate-draining" not in res.headers, where
        if mode is Mode.STATUS:
            assert res.body == b"failing\n", where  # the instance's own answer, passed through


@pytest.mark.parametrize("mode", list(EXPECTED), ids=str)
def test_each_fault_against_the_table(
    mode: Mode | str,
    gateway: Callable[..., Gateway],
    instances: Callable[..., FaultInstance],
) -> None:
    if mode == "refused":
        fault = instances(listen=False)
    elif mode is Mode.STATUS:
        fault = instances(mode, status=503)
    else:
        fault = instances(mode)
    echo = instances(Mode.ECHO, name="echo")
    pool = [fault.address, echo.address]
    if mode is Mode.DRAIN:
        # A drained instance gets no more requests, so each method needs its own: interleave.
        drains = [fault] + [instances(Mode.DRAIN) for _ in METHODS[1:]]
        echoes = [echo] + [instances(Mode.ECHO, name=f"echo{i}") for i in range(1, len(METHODS))]
        pool = [a for d, e in zip(drains, echoes, strict=True) for a in (d.address, e.address)]
    gw = gateway(pool, response_timeout="300ms", connect_timeout="200ms")
    echoes_all = [echo] if mode is not Mode.DRAIN else echoes

    for method in METHODS:
        if mode in (Mode.RESET, Mode.HEAD_ONLY) and method == "HEAD":
            continue  # a HEAD response has no body to cut
        for i in range(ATTEMPTS):
            path = f"/{method}/{i}"
            res = gw.request(method, path, body=b"payload" if method in ("POST", "PUT", "PATCH") else None)
            hit_fault = (
                any(met_fault(d, path, gw, mode) for d in drains)
                if mode is Mode.DRAIN
                else met_fault(fault, path, gw, mode)
            )
            if hit_fault:
                echo_saw = sum(1 for e in echoes_all for s in e.requests() if s.path == path)
                check(mode, method, res, echo_saw, path)
                break
        else:
            pytest.fail(f"no {method} request met the {mode} fault in {ATTEMPTS} tries")

    if mode is Mode.DRAIN:
        # Moved to draining at once: every drain instance saw exactly the one request.
        assert [len(d.requests()) for d in drains] == [1] * len(drains)


@pytest.mark.parametrize(
    ("mode", "tries", "status"),
    [("refused", 3, 502), (Mode.BLACKHOLE, 2, 504), (Mode.CLOSE, 3, 502), (Mode.SLOW, 2, 504)],
    ids=str,
)
def test_every_instance_failing_gives_the_gateways_answer(
    mode: Mode | str,
    tries: int,
    status: int,
    gateway: Callable[..., Gateway],
    instances: Callable[..., FaultInstance],
) -> None:
    faults = [instances(listen=False) if mode == "refused" else instances(mode) for _ in range(3)]
    gw = gateway([f.address for f in faults], tries=tries, response_timeout="300ms", connect_timeout="200ms")
    res = gw.request("GET", "/all-fail")
    assert res.status == status and not res.cut
    assert gw.log_entry("/all-fail")["tries"] == tries
    if mode is Mode.CLOSE:
        assert sum(len(f.requests()) for f in faults) == tries  # each try on another instance
        assert all(len(f.requests()) <= 1 for f in faults)


def test_drain_signal_out_of_tries_is_a_plain_503(
    gateway: Callable[..., Gateway], instances: Callable[..., FaultInstance]
) -> None:
    drains = [instances(Mode.DRAIN), instances(Mode.DRAIN)]
    gw = gateway([d.address for d in drains], tries=2)
    res = gw.request("POST", "/drained", body=b"x")
    assert res.status == 503 and "tidegate-draining" not in res.headers
    assert [len(d.requests()) for d in drains] == [1, 1]


def test_a_route_declared_idempotent_retries_post(
    gateway: Callable[..., Gateway], instances: Callable[..., FaultInstance]
) -> None:
    fault, echo = instances(Mode.CLOSE), instances(Mode.ECHO)
    routes = 'routes = [ { path_prefix = "/idem", pool = "web", idempotent = true } ]'
    gw = gateway([fault.address, echo.address], routes=routes)
    for prefix, want in (("/idem", 200), ("/other", 502)):
        for i in range(ATTEMPTS):
            path = f"{prefix}/{i}"
            res = gw.request("POST", path, body=b"x")
            if any(s.path == path for s in fault.requests()):
                assert res.status == want, path
                break
        else:
            pytest.fail(f"no POST {prefix} met the fault")
