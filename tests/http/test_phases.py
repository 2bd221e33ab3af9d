"""The request's phases (http/phases.py): the whole table, and event sequences against a model.

The model says the same rules the other way round — as the facts the exchange used to keep in
flags (an attempt in flight, a response accepted, bytes shown to the client, ended) — so the
table and the model agree only if both say what the gateway does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidegate.http import phases as ph

EXPECTED = {
    ("QUEUED", "START"): "PICKING",
    ("QUEUED", "ANSWER"): "DONE",
    ("QUEUED", "ABANDON"): "BROKEN",
    ("PICKING", "CONNECT"): "CONNECTING",
    ("PICKING", "SEND"): "SENT",
    ("PICKING", "ANSWER"): "DONE",
    ("PICKING", "ABANDON"): "BROKEN",
    ("CONNECTING", "SEND"): "SENT",
    ("CONNECTING", "FAIL"): "PICKING",
    ("CONNECTING", "ABANDON"): "BROKEN",
    ("SENT", "HOLD"): "HELD",
    ("SENT", "HEAD"): "STREAMING",
    ("SENT", "COMPLETE"): "DONE",
    ("SENT", "FAIL"): "PICKING",
    ("SENT", "ABANDON"): "BROKEN",
    ("HELD", "HEAD"): "STREAMING",
    ("HELD", "COMPLETE"): "DONE",
    ("HELD", "FAIL"): "PICKING",
    ("HELD", "CUT"): "BROKEN",
    ("HELD", "ABANDON"): "BROKEN",
    ("STREAMING", "COMPLETE"): "DONE",
    ("STREAMING", "CUT"): "BROKEN",
    ("STREAMING", "UPGRADE"): "TUNNEL",
    ("STREAMING", "ABANDON"): "BROKEN",
}


def test_the_table_whole() -> None:
    """Every (phase, event) pair: the expected move, or PhaseError naming both."""
    moves = 0
    for phase, pname in enumerate(ph.PHASE_NAMES):
        for event, ename in enumerate(ph.EVENT_NAMES):
            want = EXPECTED.get((pname, ename))
            if want is None:
                with pytest.raises(ph.PhaseError, match=f"{ename} in phase {pname}") as err:
                    ph.step(phase, event)
                assert (err.value.phase, err.value.event) == (phase, event)
            else:
                assert ph.PHASE_NAMES[ph.step(phase, event)] == want, (pname, ename)
                moves += 1
    assert moves == len(EXPECTED) == len(ph.TRANSITIONS)


def test_final_phases_take_no_event() -> None:
    for phase in ph.FINAL:
        for event in range(ph.EVENTS):
            with pytest.raises(ph.PhaseError):
                ph.step(phase, event)


def test_every_phase_reaches_an_end() -> None:
    """No phase is a trap: from each, some sequence of events ends the exchange."""
    ends: set[int] = set(ph.FINAL)
    changed = True
    while changed:
        changed = False
        for (phase, _), to in ph.TRANSITIONS.items():
            if to in ends and phase not in ends:
                ends.add(phase)
                changed = True
    assert ends == set(range(ph.PHASES))


@dataclass
class Model:
    """The rules as facts, as the exchange's flags used to hold them."""

    begun: bool = False
    in_attempt: bool = False
    connected: bool = False  # the request head went to the instance
    accepted: bool = False  # a response was accepted for the client
    shown: bool = False  # bytes of it (may have) reached the client
    ended: bool = False
    outcome: str = ""

    def apply(self, e: str) -> bool:
        """Apply event `e`; False (and no change) if the rules forbid it."""
        if self.ended:
            return False
        if e == "ABANDON":
            self.ended, self.outcome = True, "BROKEN"
            return True
        if e == "START":
            if self.begun:
                return False
            self.begun = True
        elif e == "ANSWER":
            if self.in_attempt:
                return False
            self.ended, self.outcome = True, "DONE"
        elif e in ("CONNECT", "SEND"):
            if not self.begun or self.connected or (self.in_attempt and e == "CONNECT"):
                return False
            self.in_attempt = True
            self.connected = e == "SEND"
        elif e in ("HOLD", "HEAD"):
            if not self.connected or self.shown or (self.accepted and e == "HOLD"):
                return False
            self.accepted = True
            self.shown = e == "HEAD"
        elif e == "COMPLETE":
            if not self.connected:
                return False
            self.ended, self.outcome = True, "DONE"
        elif e == "FAIL":
            # An attempt may fail (and be retried) only while the client has seen nothing.
            if not self.in_attempt or self.shown:
                return False
            self.in_attempt = self.connected = self.accepted = False
        elif e == "CUT":
            if not self.accepted:
                return False
            self.ended, self.outcome = True, "BROKEN"
        elif e == "UPGRADE":
            if not self.shown:
                return False
            self.ended, self.outcome = True, "TUNNEL"
        return True

    def phase(self) -> str:
        if self.ended:
            return self.outcome
        if not self.begun:
            return "QUEUED"
        if self.shown:
            return "STREAMING"
        if self.accepted:
            return "HELD"
        if self.connected:
            return "SENT"
        return "CONNECTING" if self.in_attempt else "PICKING"


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(ph.EVENT_NAMES), max_size=30))
def test_event_sequences_follow_the_model(events: list[str]) -> None:
    model = Model()
    phase = ph.QUEUED
    for name in events:
        event = ph.EVENT_NAMES.index(name)
        if model.apply(name):
            phase = ph.step(phase, event)
        else:
            with pytest.raises(ph.PhaseError):
                ph.step(phase, event)
        assert ph.PHASE_NAMES[phase] == model.phase()
        assert ph.shown(phase) == (model.accepted and not model.ended)


@settings(max_examples=1000, deadline=None)
@given(st.data())
def test_no_retry_once_the_client_saw_bytes(data: st.DataObject) -> None:
    """Along any legal path, once HEAD went out the phase never returns to PICKING."""
    phase, shown = ph.QUEUED, False
    for _ in range(40):
        legal = [e for e in range(ph.EVENTS) if (phase, e) in ph.TRANSITIONS]
        if not legal:
            break
        event = data.draw(st.sampled_from(legal))
        phase = ph.step(phase, event)
        shown = shown or event == ph.HEAD
        if shown:
            assert phase not in (ph.PICKING, ph.CONNECTING, ph.SENT, ph.HELD)
    assert phase in ph.FINAL or len(legal) > 0


def test_the_orders_the_exchange_relies_on() -> None:
    """The exchange tests ranges, not sets, on its hot path: these phases must stay adjacent."""
    assert {p for p in range(ph.PHASES) if p >= ph.TUNNEL} == ph.FINAL
    assert {p for p in range(ph.PHASES) if ph.CONNECTING <= p <= ph.SENT} == {ph.CONNECTING, ph.SENT}
    assert {p for p in range(ph.PHASES) if ph.shown(p)} == {ph.HELD, ph.STREAMING}


@pytest.mark.parametrize(
    ("move", "event"), [(ph.start, ph.START), (ph.send, ph.SEND), (ph.complete, ph.COMPLETE)]
)
def test_the_written_out_moves_are_the_tables(move: Callable[[int], int], event: int) -> None:
    for phase in range(ph.PHASES):
        want = ph.TRANSITIONS.get((phase, event))
        if want is None:
            with pytest.raises(ph.PhaseError):
                move(phase)
        else:
            assert move(phase) == want
