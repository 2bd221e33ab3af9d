from __future__ import annotations

import pytest

from tidegate.tcp.figures import ListenerFigures, RateWindow


def test_rate_over_complete_seconds() -> None:
    w = RateWindow(seconds=4)
    for t in (100.1, 100.5, 101.2, 102.9, 103.0, 103.5):
        w.add(t)
    # At 104.0 the complete seconds 100..103 hold 6 events: 1.5/s.
    assert w.rate(104.0) == pytest.approx(6 / 4)
    # The current second is not counted yet; at 103.9 the window is 99..102.
    assert w.rate(103.9) == pytest.approx(4 / 4)
    # Old buckets fall out and are reused.
    assert w.rate(107.0) == pytest.approx(2 / 4)
    w.add(108.2, 10)
    assert w.rate(109.0) == pytest.approx(10 / 4)
    assert w.rate(200.0) == 0.0


def test_rate_window_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RateWindow(0)


def test_listener_figures_per_address() -> None:
    figs = ListenerFigures()
    figs.of("a").opened += 1
    figs.of("a").opened += 1
    figs.of("b").drain_cut += 3
    assert figs.instances["a"].opened == 2
    assert figs.instances["b"].drain_cut == 3
