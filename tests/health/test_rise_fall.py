from hypothesis import given
from hypothesis import strategies as st

from tidegate.health.rise_fall import RiseFall


def reference(rise: int, fall: int, results: list[bool]) -> list[bool]:
    """Verdict after each result: it flips when the last `rise` (or `fall`) results since the
    previous flip all contradict it."""
    healthy = True
    since_flip: list[bool] = []
    out = []
    for r in results:
        since_flip.append(r)
        need = fall if healthy else rise
        tail = since_flip[-need:]
        if len(tail) == need and all(x != healthy for x in tail):
            healthy = not healthy
            since_flip = []
        out.append(healthy)
    return out


def test_starts_healthy_and_falls_after_fall_failures() -> None:
    rf = RiseFall(rise=2, fall=3)
    assert rf.observe(False) is None
    assert rf.observe(False) is None
    assert rf.observe(False) is False
    assert not rf.healthy
    assert rf.observe(False) is None


def test_a_pass_in_between_restarts_the_count() -> None:
    rf = RiseFall(rise=2, fall=3)
    for r in (False, False, True, False, False):
        assert rf.observe(r) is None
    assert rf.healthy
    assert rf.observe(False) is False


def test_rises_after_rise_passes() -> None:
    rf = RiseFall(rise=2, fall=1, healthy=False)
    assert rf.observe(True) is None
    assert rf.observe(False) is None
    assert rf.observe(True) is None
    assert rf.observe(True) is True
    assert rf.healthy


@given(st.integers(1, 5), st.integers(1, 5), st.lists(st.booleans(), max_size=60))
def test_matches_reference(rise: int, fall: int, results: list[bool]) -> None:
    rf = RiseFall(rise, fall)
    verdicts = []
    for r in results:
        before = rf.healthy
        flipped = rf.observe(r)
        assert (flipped is not None) == (rf.healthy != before)
        verdicts.append(rf.healthy)
    assert verdicts == reference(rise, fall, list(results))
