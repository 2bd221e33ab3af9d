from __future__ import annotations

import pytest

from tidegate.tcp.figures import InstanceFigures, ListenerFigures


def test_connections_per_second_from_the_opened_total() -> None:
    f = InstanceFigures()
    for i in range(40):  # 40 connections over 4 s, sampled after each as a sweeper would
        f.opened += 1
        f.sample(100.0 + i * 0.1)
    assert f.opened == 40
    assert f.connections_per_second(104.0) == pytest.approx(10.0, rel=0.05)
    # Reading samples too: with no new connections the rate falls instead of freezing.
    assert f.connections_per_second(120.0) == pytest.approx(0.0)


def test_listener_figures_per_address() -> None:
    figs = ListenerFigures()
    figs.of("a").opened += 2
    figs.of("b").drain_cut += 3
    assert figs.instances["a"].opened == 2
    assert figs.instances["b"].drain_cut == 3
