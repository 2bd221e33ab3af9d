from __future__ import annotations

import pytest

from tidegate.balancing import make_scheduler
from tidegate.balancing.scheduler import scheduler_names

from .helpers import ALL_SCHEDULERS


def test_every_interface_and_ipvs_name_is_registered() -> None:
    assert set(ALL_SCHEDULERS) <= set(scheduler_names())


def test_unknown_scheduler_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown scheduler 'fastest'"):
        make_scheduler("fastest")


@pytest.mark.parametrize("name", ALL_SCHEDULERS)
def test_empty_pool_picks_nothing(name: str) -> None:
    sched = make_scheduler(name)
    sched.update([])
    assert sched.pick(b"k") is None
    assert sched.pick(None) is None
