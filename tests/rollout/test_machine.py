"""The rollout's phase machine, fed events by hand: no sockets, no sleeping."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tidegate.rollout.machine import (
    AskRestart,
    Event,
    Failed,
    Finish,
    InstanceRollout,
    Layer,
    Limits,
    Load,
    Phase,
    Probe,
    Probed,
    ReadLoad,
    Readmit,
    Readmitted,
    ReadState,
    ReadSupervisor,
    RestartAsked,
    Started,
    StateSeen,
    Supervised,
    Wait,
    Waited,
    Withdraw,
    Withdrawn,
)

LIMITS = Limits(settle_timeout=5, restart_timeout=5, health_timeout=3, rise=2, interval=0.5, poll=0.1)


def machine(layer: Layer = Layer.HTTP, **kw: float) -> InstanceRollout:
    limits = LIMITS if not kw else Limits(**{**LIMITS.__dict__, **kw})
    return InstanceRollout("127.0.0.1:9001", layer, limits)


def test_the_happy_path_over_http() -> None:
    m = machine()
    assert m.step(Started(0.0, weight=3, version="1")) == Withdraw(Layer.HTTP)
    assert m.step(Withdrawn(0.1)) == ReadLoad(Layer.HTTP)
    assert m.status == "counting requests in flight"
    assert m.step(Load(0.2, 2)) == Wait(0.1)
    assert m.status == "2 in flight"
    assert m.step(Waited(0.3)) == ReadLoad(Layer.HTTP)
    assert m.step(Load(0.4, 0)) == AskRestart()
    assert m.step(RestartAsked(0.5, generation=2)) == ReadSupervisor()
    # The old process is still draining: keep looking.
    assert m.step(Supervised(0.6, "exiting", generation=1)) == Wait(0.1)
    assert m.step(Waited(0.7)) == ReadSupervisor()
    assert m.step(Supervised(0.8, "starting", generation=2)) == Wait(0.1)
    assert m.step(Waited(0.9)) == ReadSupervisor()
    assert m.step(Supervised(1.0, "running", generation=2, version="2")) == Probe()
    assert m.step(Probed(1.1, True, "200", "2")) == Wait(0.5)
    assert m.step(Waited(1.6)) == Probe()
    # rise = 2 passes in a row, then readmission with the weight it had.
    assert m.step(Probed(1.7, True, "200", "2")) == Readmit(Layer.HTTP, 3)
    assert m.step(Readmitted(1.8)) == ReadState()
    # The gateway's own checks have not caught up yet: it keeps the instance down a moment.
    assert m.step(StateSeen(1.9, "down", "503")) == Wait(0.1)
    assert m.status == "gateway says down"
    assert m.step(Waited(2.0)) == ReadState()
    done = m.step(StateSeen(2.1, "slow-start"))
    assert isinstance(done, Finish) and done.ok
    assert m.phase is Phase.DONE
    assert (m.version_before, m.version_after) == ("1", "2")
    assert [n.split(":")[0] for n in m.notes] == [
        "withdraw",
        "settle",
        "restart",
        "starting",
        "health",
        "readmit",
    ]
    # A finished machine only repeats its outcome.
    assert m.step(Waited(9.0)) == done


def test_readmitted_but_never_serving_fails_after_the_health_timeout() -> None:
    m = machine()
    for e in (Started(0), Withdrawn(0), Load(0, 0), RestartAsked(0, 2), Supervised(0, "running", 2)):
        m.step(e)
    m.step(Probed(0.1, True))
    assert isinstance(m.step(Probed(0.6, True)), Readmit)
    assert m.step(Readmitted(0.7)) == ReadState()
    assert m.step(StateSeen(1.0, "down", "timeout")) == Wait(0.1)
    out = m.step(StateSeen(3.8, "down", "timeout"))
    assert isinstance(out, Finish) and not out.ok
    assert "still has it down" in out.message and "timeout" in out.message


def test_a_failed_check_resets_the_count() -> None:
    m = machine()
    for e in (Started(0), Withdrawn(0), Load(0, 0), RestartAsked(0, 2), Supervised(0, "running", 2)):
        m.step(e)
    assert m.phase is Phase.HEALTH
    assert m.step(Probed(0.1, True, "200")) == Wait(0.5)
    assert m.step(Probed(0.6, False, "500")) == Wait(0.5)
    assert m.passes == 0
    assert m.step(Probed(1.1, True, "200")) == Wait(0.5)
    assert isinstance(m.step(Probed(1.6, True, "200")), Readmit)


def test_health_timeout_leaves_it_out_of_rotation_with_a_clear_message() -> None:
    m = machine()
    for e in (Started(0), Withdrawn(0), Load(0, 0), RestartAsked(0, 2)):
        m.step(e)
    m.step(Supervised(1.0, "running", 2, version="2-bad"))
    assert m.step(Probed(1.5, False, "500", "2-bad")) == Wait(0.5)
    out = m.step(Probed(4.0, False, "500", "2-bad"))
    assert isinstance(out, Finish) and not out.ok
    assert "failed its health check" in out.message and "500" in out.message and "2-bad" in out.message
    assert "stays out of rotation" in out.message
    assert m.phase is Phase.FAILED


def test_settle_timeout_readmits_and_fails_without_restarting() -> None:
    m = machine()
    m.step(Started(0, weight=2))
    m.step(Withdrawn(0))
    assert m.step(Load(1, 4)) == Wait(0.1)
    assert m.step(Load(5.0, 3)) == Readmit(Layer.HTTP, 2)
    out = m.step(Readmitted(5.1))
    assert isinstance(out, Finish) and not out.ok
    assert "still 3 requests in flight" in out.message and "not restarted" in out.message


def test_restart_refused_readmits() -> None:
    m = machine()
    for e in (Started(0), Withdrawn(0), Load(0, 0)):
        m.step(e)
    assert m.step(Failed(0.1, "supervisor: 404 no instance")) == Readmit(Layer.HTTP, 1)
    out = m.step(Readmitted(0.2))
    assert isinstance(out, Finish) and not out.ok and "404 no instance" in out.message


def test_new_process_never_listening_fails_after_restart_timeout() -> None:
    m = machine()
    for e in (Started(0), Withdrawn(0), Load(0, 0), RestartAsked(0, 2)):
        m.step(e)
    assert m.step(Supervised(1, "backoff", 3, last_exit=3, crashes=2)) == Wait(0.1)
    out = m.step(Supervised(5.5, "backoff", 4, last_exit=3, crashes=3))
    assert isinstance(out, Finish) and not out.ok
    assert "did not start within 5 s" in out.message and "last exit code 3" in out.message


def test_withdraw_failure_changes_nothing() -> None:
    m = machine()
    m.step(Started(0))
    out = m.step(Failed(0.1, "admin API: 404 no pool"))
    assert isinstance(out, Finish) and not out.ok and "404 no pool" in out.message


def test_dns_waits_until_out_of_the_answers_then_ttl_plus_grace() -> None:
    m = InstanceRollout(
        "10.0.0.1:80", Layer.DNS, Limits(dns_wait=31.0, dns_why="max TTL 30 s + grace 1 s", poll=0.1)
    )
    assert m.step(Started(0)) == Withdraw(Layer.DNS)
    assert m.step(Withdrawn(0)) == ReadLoad(Layer.DNS)
    assert m.step(Load(0.1, 1)) == Wait(0.1)  # still in the answers
    assert m.status == "waiting for it to leave the DNS answers"
    assert m.step(Waited(0.2)) == ReadLoad(Layer.DNS)
    assert m.step(Load(0.3, 0)) == Wait(31.0)
    assert "max TTL 30 s" in m.status
    # Woken early (it does not happen, but the machine must not trust the shell's sleep).
    assert m.step(Waited(20.3)) == Wait(11.0)
    assert m.step(Waited(31.3)) == AskRestart()
    assert any("then waited 31.0 s for max TTL 30 s + grace 1 s" in n for n in m.notes)


def test_lvs_quiesces_and_gives_the_weight_back() -> None:
    m = machine(Layer.LVS)
    assert m.step(Started(0, weight=5)) == Withdraw(Layer.LVS)
    assert m.step(Withdrawn(0)) == ReadLoad(Layer.LVS)
    assert m.status == "counting connections"
    assert m.step(Load(0.1, 7)) == Wait(0.1)
    assert m.status == "7 connections"
    assert m.step(Load(0.2, 0)) == AskRestart()
    for e in (RestartAsked(0.3, 2), Supervised(0.4, "running", 2), Probed(0.5, True), Probed(1.0, True)):
        cmd = m.step(e)
    assert cmd == Readmit(Layer.LVS, 5)


# --- properties: the machine against an environment that answers each command at random -------------
@st.composite
def _run(draw: st.DrawFn, layer: Layer) -> tuple[InstanceRollout, list[tuple[object, Event]]]:
    """Drive a machine to its end; every command gets one of the answers the shell can give."""
    m = InstanceRollout(
        "a:1", layer, Limits(settle_timeout=3, restart_timeout=3, health_timeout=3, rise=2, dns_wait=1.0)
    )
    now = 0.0
    event: Event = Started(now)
    trace: list[tuple[object, Event]] = []
    for _ in range(2000):
        cmd = m.step(event)
        trace.append((cmd, event))
        if isinstance(cmd, Finish):
            return m, trace
        now += draw(st.sampled_from([0.0, 0.1, 0.5, 1.0])) if not isinstance(cmd, Wait) else cmd.seconds
        fail = draw(st.integers(0, 9)) == 0
        if fail and not isinstance(cmd, Wait):
            event = Failed(now, "boom")
        elif isinstance(cmd, Withdraw):
            event = Withdrawn(now)
        elif isinstance(cmd, ReadLoad):
            event = Load(now, draw(st.integers(0, 2)))
        elif isinstance(cmd, Wait):
            event = Waited(now)
        elif isinstance(cmd, AskRestart):
            event = RestartAsked(now, 2)
        elif isinstance(cmd, ReadSupervisor):
            gen = draw(st.integers(1, 3))
            event = Supervised(now, draw(st.sampled_from(["starting", "running", "exiting", "backoff"])), gen)
        elif isinstance(cmd, Probe):
            event = Probed(now, draw(st.booleans()), "x")
        elif isinstance(cmd, Readmit):
            event = Readmitted(now)
        elif isinstance(cmd, ReadState):
            event = StateSeen(now, draw(st.sampled_from(["up", "slow-start", "down", "draining"])))
    raise AssertionError("the machine did not finish")


@settings(max_examples=400, deadline=None)
@given(data=st.data(), layer=st.sampled_from(list(Layer)))
def test_safety_against_any_environment(data: st.DataObject, layer: Layer) -> None:
    m, trace = data.draw(_run(layer))
    outcome = trace[-1][0]
    assert isinstance(outcome, Finish)
    assert "internal error" not in outcome.message
    restarted = False
    passes = 0
    for i, (cmd, event) in enumerate(trace):
        if isinstance(event, Probed):
            passes = passes + 1 if event.ok else 0
        if isinstance(event, RestartAsked):
            restarted = True  # the supervisor took it: the old process is going away
        if isinstance(cmd, AskRestart):
            # Never before the instance is idle (http, lvs) or its DNS answers have expired.
            if layer is Layer.DNS:
                assert isinstance(event, Waited) and m._withdrawn_at is not None
                assert event.now - m._withdrawn_at >= m.limits.dns_wait - 1e-3
            else:
                assert isinstance(event, Load) and event.count == 0
        if isinstance(cmd, Readmit) and restarted and isinstance(event, Probed):
            assert passes >= 2  # only after `rise` passing checks in a row
        if isinstance(cmd, Readmit) and restarted and not isinstance(event, Probed):
            raise AssertionError(f"readmitted a restarted instance without checks at step {i}")
    if outcome.ok:
        assert restarted and passes >= 2 and m.phase is Phase.DONE
    else:
        assert m.phase is Phase.FAILED
