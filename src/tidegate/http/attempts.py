"""The retry seam: the names the attempt loop uses from the retry modules, in one place.

`retry.py`, `retry_budget.py` and `body_store.py` are written by helper `retry`; until they are on
main the stand-ins in `_retry_interim.py` / `_body_store_interim.py` (same API) fill in.
"""

from tidegate.http._body_store_interim import BodyStore, BodyTooLarge, SpoolError
from tidegate.http._retry_interim import Decision, Failure, RetryBudget, RetryPolicy, decide

__all__ = [
    "BodyStore",
    "BodyTooLarge",
    "Decision",
    "Failure",
    "RetryBudget",
    "RetryPolicy",
    "SpoolError",
    "decide",
]
