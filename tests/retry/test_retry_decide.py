"""decide() against docs/architecture.md's retry table, row by row and by property."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidegate.config.model import RetryConfig
from tidegate.http.retry import IDEMPOTENT_METHODS, Decision, Failure, RetryPolicy, decide

# The table, written out independently of the module: failure → (any method?, give-up status).
TABLE: dict[Failure, tuple[bool, int | None]] = {
    Failure.CONNECT_FAILED: (True, 502),
    Failure.CONNECT_TIMEOUT: (True, 504),
    Failure.DRAIN_SIGNAL: (True, 503),
    Failure.REUSED_CLOSED: (False, 502),  # idempotent only: see retry.py
    Failure.LOST_AFTER_SEND: (False, 502),
    Failure.RESPONSE_TIMEOUT: (False, 504),
    Failure.STATUS: (False, None),  # None: the upstream response is passed through
}
RFC9110_IDEMPOTENT = [b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"]
NOT_IDEMPOTENT = [b"POST", b"PATCH", b"CONNECT", b"get", b"PROPFIND"]
POLICY = RetryPolicy(tries=3, statuses=frozenset({502, 503, 504}))


def test_idempotent_methods_are_rfc9110s() -> None:
    assert set(RFC9110_IDEMPOTENT) == IDEMPOTENT_METHODS
    for m in RFC9110_IDEMPOTENT:
        assert POLICY.idempotent(m)
    for m in NOT_IDEMPOTENT:
        assert not POLICY.idempotent(m)  # methods are case-sensitive (RFC 9110 §9.1)
        assert RetryPolicy(route_idempotent=True).idempotent(m)


@pytest.mark.parametrize(
    "failure",
    [Failure.CONNECT_FAILED, Failure.CONNECT_TIMEOUT, Failure.DRAIN_SIGNAL],
)
@pytest.mark.parametrize("method", RFC9110_IDEMPOTENT + NOT_IDEMPOTENT)
def test_any_method_rows(failure: Failure, method: bytes) -> None:
    status = 503 if failure is Failure.DRAIN_SIGNAL else None
    assert decide(POLICY, failure, method, 1, status).retry
    assert decide(POLICY, failure, method, 2, status).retry


@pytest.mark.parametrize(
    "failure", [Failure.REUSED_CLOSED, Failure.LOST_AFTER_SEND, Failure.RESPONSE_TIMEOUT]
)
def test_idempotent_only_rows(failure: Failure) -> None:
    for m in RFC9110_IDEMPOTENT:
        assert decide(POLICY, failure, m, 1).retry
    for m in NOT_IDEMPOTENT:
        d = decide(POLICY, failure, m, 1)
        assert d == Decision(retry=False, status=TABLE[failure][1], reason="method")
        # ...unless the route declares itself idempotent, or the request carries Idempotency-Key
        assert decide(RetryPolicy(route_idempotent=True), failure, m, 1).retry
        assert decide(POLICY, failure, m, 1, idempotency_key=True).retry


def test_configured_statuses() -> None:
    for s in (502, 503, 504):
        assert decide(POLICY, Failure.STATUS, b"GET", 1, s).retry
        d = decide(POLICY, Failure.STATUS, b"POST", 1, s)
        assert d == Decision(retry=False, status=s, pass_through=True, reason="method")
    # A status that is not configured is passed through, never retried.
    d = decide(POLICY, Failure.STATUS, b"GET", 1, 500)
    assert d == Decision(retry=False, status=500, pass_through=True, reason="status")
    only_500 = RetryPolicy(statuses=frozenset({500}))
    assert decide(only_500, Failure.STATUS, b"GET", 1, 500).retry
    assert not decide(only_500, Failure.STATUS, b"GET", 1, 503).retry
    with pytest.raises(ValueError):
        decide(POLICY, Failure.STATUS, b"GET", 1, None)


@pytest.mark.parametrize("failure", list(Failure))
def test_never_once_a_response_byte_went_out(failure: Failure) -> None:
    d = decide(RetryPolicy(route_idempotent=True), failure, b"GET", 1, 503, response_started=True)
    assert not d.retry and d.abort and d.status is None and not d.pass_through


def test_drain_signal_moves_the_instance_to_draining_whatever_the_decision() -> None:
    assert decide(POLICY, Failure.DRAIN_SIGNAL, b"POST", 1, 503).drain
    out = decide(POLICY, Failure.DRAIN_SIGNAL, b"POST", 3, 503)
    assert out == Decision(retry=False, status=503, drain=True, reason="tries")
    assert decide(POLICY, Failure.DRAIN_SIGNAL, b"POST", 1, 503, budget_ok=False).drain
    assert not decide(POLICY, Failure.STATUS, b"GET", 1, 503).drain


def test_tries_count_every_attempt() -> None:
    one = RetryPolicy(tries=1)
    assert decide(one, Failure.CONNECT_FAILED, b"GET", 1) == Decision(False, 502, reason="tries")
    three = RetryPolicy(tries=3)
    assert [decide(three, Failure.CONNECT_FAILED, b"GET", a).retry for a in (1, 2, 3, 4)] == [
        True,
        True,
        False,
        False,
    ]


def test_budget_exhausted() -> None:
    d = decide(POLICY, Failure.CONNECT_TIMEOUT, b"GET", 1, budget_ok=False)
    assert d == Decision(retry=False, status=504, reason="budget")


def test_from_config() -> None:
    cfg = RetryConfig(tries=5, budget=0.5, statuses=[500, 502])
    p = RetryPolicy.from_config(cfg, route_idempotent=True)
    assert p == RetryPolicy(tries=5, statuses=frozenset({500, 502}), budget=0.5, route_idempotent=True)
    assert RetryPolicy.from_config(RetryConfig(), False) == RetryPolicy()


methods = st.sampled_from(RFC9110_IDEMPOTENT + NOT_IDEMPOTENT) | st.binary(min_size=1, max_size=8)
policies = st.builds(
    RetryPolicy,
    tries=st.integers(1, 20),
    statuses=st.frozensets(st.integers(100, 599), max_size=5),
    budget=st.floats(0, 10),
    route_idempotent=st.booleans(),
)


@given(
    policy=policies,
    failure=st.sampled_from(list(Failure)),
    method=methods,
    attempt=st.integers(1, 25),
    status=st.integers(100, 599),
    response_started=st.booleans(),
    budget_ok=st.booleans(),
)
def test_decide_is_the_table(
    policy: RetryPolicy,
    failure: Failure,
    method: bytes,
    attempt: int,
    status: int,
    response_started: bool,
    budget_ok: bool,
) -> None:
    d = decide(policy, failure, method, attempt, status, response_started, budget_ok)
    any_method, give_up = TABLE[failure]
    idempotent = policy.route_idempotent or method in RFC9110_IDEMPOTENT
    status_ok = failure is not Failure.STATUS or status in policy.statuses
    expected_retry = (
        not response_started
        and (any_method or idempotent)
        and status_ok
        and attempt < policy.tries
        and budget_ok
    )
    assert d.retry == expected_retry
    assert d.drain == (failure is Failure.DRAIN_SIGNAL)
    if d.retry:
        assert d.status is None and not d.abort and not d.pass_through
    elif response_started:
        assert d.abort and d.status is None
    elif failure is Failure.STATUS:
        assert d.pass_through and d.status == status and not d.abort
    else:
        assert d.status == give_up and not d.pass_through and not d.abort
    assert d.reason
