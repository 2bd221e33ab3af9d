from hypothesis import given, settings
from hypothesis import strategies as st

from tidegate.balancing.instance import Instance
from tidegate.balancing.state import State
from tidegate.config.model import OutlierConfig
from tidegate.health.outlier import OutlierDetector


def pool(n: int) -> list[Instance]:
    return [Instance(f"127.0.0.1:{9000 + i}", "127.0.0.1", 9000 + i) for i in range(n)]


def cfg(**kw: float) -> OutlierConfig:
    base = dict(consecutive_failures=3, ejection=10.0, max_ejection=35.0, max_ejected_percent=50)
    base.update(kw)
    return OutlierConfig(**base)


def fail(det: OutlierDetector, inst: Instance, members: list[Instance], now: float, times: int):
    out = None
    for _ in range(times):
        out = det.failure(inst, now, members) or out
    return out


def test_ejects_after_consecutive_failures_only() -> None:
    members = pool(4)
    a = members[0]
    det = OutlierDetector(cfg())
    assert det.failure(a, 0.0, members) is None
    assert det.failure(a, 0.0, members) is None
    det.success(a)  # breaks the run
    assert det.failure(a, 0.0, members) is None
    assert det.failure(a, 0.0, members) is None
    ej = det.failure(a, 1.0, members)
    assert ej is not None and ej.instance is a and ej.duration == 10.0 and ej.nth == 1
    assert "ejected" in ej.cause and "3 consecutive failures" in ej.cause
    assert det.is_ejected(a) and det.ejected_until(a) == 11.0
    assert det.failure(a, 2.0, members) is None  # already ejected


def test_expiry_then_longer_ejections_capped() -> None:
    members = pool(4)
    a = members[0]
    det = OutlierDetector(cfg())
    now = 0.0
    durations = []
    for _ in range(5):
        ej = fail(det, a, members, now, 3)
        assert ej is not None
        durations.append(ej.duration)
        assert det.expired(now + ej.duration - 0.001) == []
        now += ej.duration
        assert det.expired(now) == [a]
        assert not det.is_ejected(a)
        now += 1.0  # fails again soon after readmission
    assert durations == [10.0, 20.0, 30.0, 35.0, 35.0]


def test_the_count_restarts_after_a_quiet_max_ejection() -> None:
    members = pool(4)
    a = members[0]
    det = OutlierDetector(cfg())
    fail(det, a, members, 0.0, 3)
    assert det.expired(10.0) == [a]
    assert fail(det, a, members, 44.9, 3).duration == 20.0  # 34.9 s after readmission: same incident
    assert det.expired(64.9) == [a]
    assert fail(det, a, members, 64.9 + 35.0, 3).duration == 10.0  # quiet for max_ejection


def test_cap_on_the_share_of_the_pool() -> None:
    members = pool(4)  # 50% of 4: at most 2 ejected at once
    det = OutlierDetector(cfg())
    assert fail(det, members[0], members, 0.0, 3) is not None
    members[0].state = State.DOWN
    assert fail(det, members[1], members, 0.0, 3) is not None
    members[1].state = State.DOWN
    assert fail(det, members[2], members, 0.0, 5) is None
    assert det.ejected() == members[:2]
    det.expired(10.0)
    members[0].state = State.UP
    members[1].state = State.UP
    # the failures of the one held back keep counting: it goes at its next failure
    assert det.failure(members[2], 10.0, members) is not None


def test_never_the_last_instance_that_takes_work() -> None:
    members = pool(2)
    det = OutlierDetector(cfg(max_ejected_percent=100))
    members[1].state = State.MAINT
    assert fail(det, members[0], members, 0.0, 10) is None
    single = pool(1)
    assert fail(OutlierDetector(cfg(max_ejected_percent=100)), single[0], single, 0.0, 10) is None


def test_only_instances_taking_work_are_counted() -> None:
    members = pool(3)
    det = OutlierDetector(cfg())
    for state in (State.DRAINING, State.DOWN, State.MAINT):
        members[0].state = state
        assert fail(det, members[0], members, 0.0, 10) is None
    members[0].state = State.SLOW_START
    assert fail(det, members[0], members, 0.0, 3) is not None


def test_switched_off_with_zero() -> None:
    members = pool(3)
    det = OutlierDetector(cfg(consecutive_failures=0))
    assert not det.enabled
    assert fail(det, members[0], members, 0.0, 100) is None


def test_pardon_ends_an_ejection_and_forget_drops_records() -> None:
    members = pool(3)
    det = OutlierDetector(cfg())
    fail(det, members[0], members, 0.0, 3)
    det.pardon(members[0], 1.0)
    assert not det.is_ejected(members[0])
    assert det.expired(100.0) == []
    det.forget_missing(members[1:])
    assert det.consecutive_failures(members[0]) == 0 and det.ejected() == []


@settings(max_examples=300)
@given(
    st.integers(1, 8),
    st.integers(0, 100),
    st.lists(st.tuples(st.integers(0, 7), st.booleans(), st.floats(0, 5)), max_size=200),
)
def test_a_pool_is_never_emptied_nor_over_ejected(
    n: int, pct: int, events: list[tuple[int, bool, float]]
) -> None:
    members = pool(n)
    det = OutlierDetector(cfg(consecutive_failures=2, ejection=3.0, max_ejected_percent=pct))
    now = 0.0
    for idx, ok, dt in events:
        now += dt
        for inst in det.expired(now):
            inst.state = State.UP
        inst = members[idx % n]
        if ok:
            det.success(inst)
        elif det.failure(inst, now, members) is not None:
            inst.state = State.DOWN  # what the service does with an ejection
        ejected = det.ejected()
        assert len(ejected) * 100 <= pct * n
        assert any(i.available for i in members)
        assert all(i.state is State.DOWN for i in ejected)
