"""Whether a failed attempt is tried again, and what the client gets when it is not (pure, no I/O).

Theory of operation. The gateway makes an attempt on an instance; when it fails it names what
happened (`Failure`) and asks `decide`. The rules are the retry table of docs/architecture.md:

| what happened (`Failure`)                                | retried?                        | giving up → client gets |
| -------------------------------------------------------- | ------------------------------- | ----------------------- |
| CONNECT_FAILED (refused, unreachable, reset on connect)  | any method                      | 502                     |
| CONNECT_TIMEOUT                                          | any method                      | 504                     |
| DRAIN_SIGNAL (503 + `Tidegate-Draining: 1`)              | any method                      | 503, no drain header    |
| REUSED_CLOSED (reused keep-alive conn. closed, no byte)  | idempotent only (see below)     | 502                     |
| LOST_AFTER_SEND (fresh conn. lost, no response byte)     | idempotent only                 | 502                     |
| RESPONSE_TIMEOUT (no response byte within the timeout)   | idempotent only                 | 504                     |
| STATUS (a status in `http.retry.statuses`, not forwarded)| idempotent only                 | the upstream response   |
| anything, once a response byte went to the client        | never                           | nothing: cut the client |

- Any-method rows are those where the request provably never reached the application: no
  connection, or the instance's promise (the drain signal).
- REUSED_CLOSED is the one row that differs from retrying every method (docs/architecture.md says why). A reused
  keep-alive connection that closes before any response byte is *usually* the idle-close race
  (the instance closed it as we sent), but an instance that dies while running the request looks
  exactly the same from here, and the end-to-end kill test saw POSTs executed twice that way.
  RFC 9112 §9.3.1 allows automatic retries of non-idempotent requests only when the proxy knows
  the request was not applied; Go's transport and nginx decide the same way. So it is retried for
  idempotent methods, idempotent routes and requests carrying an `Idempotency-Key` header (the
  IETF httpapi draft: the application deduplicates by key). The race itself is kept rare: pooled
  connections are dropped as soon as the instance closes them and are not reused after
  UPSTREAM_IDLE_SECONDS (upstream.py), below common servers' keep-alive timeouts, and a draining
  instance is drained at the gateway before it closes connections (the rolling upgrade's order).
- A request with an `Idempotency-Key` header counts as idempotent in every row.
- RESPONSE_TIMEOUT is not in the table by name: the request was sent and the application may be
  running it, which is the LOST_AFTER_SEND case, so it follows that row (as nginx's
  `proxy_next_upstream timeout` does). Giving up is 504, as nginx and HAProxy answer.
- CONNECT_TIMEOUT gives 504 (nginx's answer for "timed out while connecting"); the other
  connection failures give 502.
- DRAIN_SIGNAL out of tries gives a fresh 503 *without* `Tidegate-Draining`: the header is the
  instance's promise to this gateway, and passing it on would tell a gateway in front of us that we
  are draining. Whatever the decision, `Decision.drain` says: move that instance to `draining`.
- STATUS out of tries (or for a method that may not be retried) forwards the upstream response as
  it is (`pass_through`): the client sees what the application said, as nginx and Envoy do.
- Idempotent methods are RFC 9110 §9.2.2's: GET HEAD OPTIONS TRACE PUT DELETE (case-sensitive,
  §9.1). A route with `idempotent = true` declares every method safe to retry.

Bounds. `attempt` is the 1-based number of the attempt that just failed; a retry is allowed while
`attempt < policy.tries` (`http.retry.tries` counts every attempt, the first one included). The
pool's `RetryBudget` (retry_budget.py) caps retries to a ratio of recent requests. Call pattern:

    decision = decide(policy, failure, method, attempt, status, response_started,
                      budget_ok=budget.can_spend(now))
    if decision.retry:
        budget.spend(now)
        tried.add(inst)
        inst = pool.pick(key, avoid=tried)   # another instance not yet tried, when one exists

(`budget.try_spend(now)` checks and spends at once; passing its result as `budget_ok` also works
but spends a token on failures that would not have been retried anyway.) "Another instance not
yet tried" is the scheduler's `avoid` parameter: `pool.pick(key, avoid=tried)` returns an
instance outside `tried` when one is eligible, else any eligible one (balancing/scheduler.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tidegate.config.model import RetryConfig

IDEMPOTENT_METHODS: frozenset[bytes] = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})


class Failure(StrEnum):
    CONNECT_FAILED = "connect_failed"
    CONNECT_TIMEOUT = "connect_timeout"
    DRAIN_SIGNAL = "drain_signal"
    REUSED_CLOSED = "reused_closed"
    LOST_AFTER_SEND = "lost_after_send"
    RESPONSE_TIMEOUT = "response_timeout"
    STATUS = "status"


# Failures where the request never reached the application: retried whatever the method.
ANY_METHOD: frozenset[Failure] = frozenset(
    {Failure.CONNECT_FAILED, Failure.CONNECT_TIMEOUT, Failure.DRAIN_SIGNAL}
)

# What the client gets when the gateway gives up before any response byte went out
# (None for STATUS: the upstream response is passed through).
GIVE_UP_STATUS: dict[Failure, int | None] = {
    Failure.CONNECT_FAILED: 502,
    Failure.CONNECT_TIMEOUT: 504,
    Failure.DRAIN_SIGNAL: 503,
    Failure.REUSED_CLOSED: 502,
    Failure.LOST_AFTER_SEND: 502,
    Failure.RESPONSE_TIMEOUT: 504,
    Failure.STATUS: None,
}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """One route's retry rules: `http.retry` plus the route's `idempotent` flag."""

    tries: int = 3
    statuses: frozenset[int] = frozenset({502, 503, 504})
    budget: float = 0.2
    route_idempotent: bool = False

    @classmethod
    def from_config(cls, retry_cfg: RetryConfig, route_idempotent: bool = False) -> RetryPolicy:
        return cls(
            tries=retry_cfg.tries,
            statuses=frozenset(retry_cfg.statuses),
            budget=retry_cfg.budget,
            route_idempotent=route_idempotent,
        )

    def idempotent(self, method: bytes) -> bool:
        return self.route_idempotent or method in IDEMPOTENT_METHODS

    def retryable_status(self, status: int) -> bool:
        return status in self.statuses


@dataclass(frozen=True, slots=True)
class Decision:
    """What the gateway does after a failed attempt.

    - `retry`: make another attempt (on `pool.pick(key, avoid=tried)`).
    - otherwise, when `abort`: a response byte already went out; nothing can be said to the client
      any more, so its connection is closed (the response is visibly truncated).
    - otherwise, when `pass_through`: forward the upstream response as received; `status` is its
      status.
    - otherwise: answer the client with `status` (502, 503 or 504) from the gateway itself.
    - `drain`: whatever the rest says, move the instance to `draining` (it sent the drain signal).
    - `reason`: a short word for logs and metrics ("retry", "tries", "budget", "method", ...).
    """

    retry: bool
    status: int | None = None
    pass_through: bool = False
    abort: bool = False
    drain: bool = False
    reason: str = ""


def decide(
    policy: RetryPolicy,
    failure: Failure,
    method: bytes,
    attempt: int,
    status: int | None = None,
    response_started: bool = False,
    budget_ok: bool = True,
    idempotency_key: bool = False,
) -> Decision:
    """The retry table as a function; see the module docstring for every rule and its reason.

    `status` is the upstream status for STATUS (and DRAIN_SIGNAL, where it is 503); it is ignored
    for the other failures. The checks run in the order that makes `reason` most useful: what is
    impossible (bytes already sent) before what is forbidden (method) before what is exhausted.
    """
    drain = failure is Failure.DRAIN_SIGNAL
    if response_started:
        return Decision(retry=False, abort=True, drain=drain, reason="response_started")

    if failure is Failure.STATUS:
        if status is None:
            raise ValueError("Failure.STATUS needs the upstream status")
        give_up = Decision(retry=False, status=status, pass_through=True)
        if not policy.retryable_status(status):
            return replace(give_up, reason="status")
    else:
        give_up_status = GIVE_UP_STATUS[failure]
        give_up = Decision(retry=False, status=give_up_status, drain=drain)

    if failure not in ANY_METHOD and not (idempotency_key or policy.idempotent(method)):
        return replace(give_up, reason="method")
    if attempt >= policy.tries:
        return replace(give_up, reason="tries")
    if not budget_ok:
        return replace(give_up, reason="budget")
    return Decision(retry=True, drain=drain, reason="retry")
