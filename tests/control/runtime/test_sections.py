"""Which sections a reload keeps, adds and removes (pure; exhaustive over small configs)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tidegate.config import parse_config
from tidegate.control.runtime.sections import plan_sections, sections_of

keys = st.lists(
    st.tuples(st.sampled_from(["tcp", "http", "dns"]), st.sampled_from(["a:1", "a:0", "b:2"])), max_size=6
)


@given(keys, keys)
def test_every_section_is_kept_added_or_removed_exactly_once(running, wanted) -> None:
    plan = plan_sections(running, wanted)
    old = [i for i, _ in plan.kept] + plan.removed
    new = [j for _, j in plan.kept] + plan.added
    assert sorted(old) == list(range(len(running)))
    assert sorted(new) == list(range(len(wanted)))
    assert all(running[i] == wanted[j] for i, j in plan.kept)
    # Nothing is stopped and started again that could have been kept.
    assert not {running[i] for i in plan.removed} & {wanted[j] for j in plan.added}


@given(keys)
def test_an_unchanged_config_keeps_everything_in_place(running) -> None:
    plan = plan_sections(running, running)
    assert plan.kept == [(i, i) for i in range(len(running))] and not plan.added and not plan.removed


def test_same_address_sections_pair_in_file_order_and_a_moved_listen_is_a_new_section() -> None:
    plan = plan_sections([("tcp", "a:0"), ("tcp", "a:0"), ("tcp", "b:2")], [("tcp", "a:0"), ("tcp", "c:3")])
    assert plan.kept == [(0, 0)] and plan.added == [1] and plan.removed == [1, 2]


def test_sections_of_a_config() -> None:
    cfg = parse_config(
        '[admin]\nlisten = "127.0.0.1:0"\n[[pools]]\nname = "p"\ninstances = [{ address = "127.0.0.1:1" }]\n'
        '[[http]]\nlisten = "127.0.0.1:0"\npool = "p"\n'
        '[[tcp]]\nlisten = "127.0.0.1:5"\npool = "p"\n[[tcp]]\nlisten = "127.0.0.1:6"\npool = "p"\n'
    )
    got = [(s.kind, s.key[1], s.position) for s in sections_of(cfg)]
    assert got == [
        ("health", "health", 0),
        ("admin", "127.0.0.1:0", 0),
        ("http", "127.0.0.1:0", 0),
        ("tcp", "127.0.0.1:5", 0),
        ("tcp", "127.0.0.1:6", 1),
    ]
