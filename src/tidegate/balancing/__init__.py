"""Instances, pools, their states and every scheduler: pure code shared by all data planes."""

from tidegate.balancing.instance import Instance
from tidegate.balancing.pool import Pool
from tidegate.balancing.scheduler import Scheduler, make_scheduler
from tidegate.balancing.state import State

__all__ = ["Instance", "Pool", "Scheduler", "State", "make_scheduler"]
