"""Instances, pools, their states and every scheduler: pure code shared by all data planes."""

from tidegate.balancing.instance import Instance
from tidegate.balancing.pool import OPERATOR, Pool, StateChange
from tidegate.balancing.scheduler import Scheduler, make_scheduler
from tidegate.balancing.slow_start import ramp_factor
from tidegate.balancing.state import State
from tidegate.balancing.transitions import Event, next_state

__all__ = [
    "OPERATOR",
    "Event",
    "Instance",
    "Pool",
    "Scheduler",
    "State",
    "StateChange",
    "make_scheduler",
    "next_state",
    "ramp_factor",
]
