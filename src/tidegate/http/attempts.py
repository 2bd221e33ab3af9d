"""The names the attempt loop uses from the retry modules (helper `retry`'s), in one place."""

from tidegate.http.body_store import BodyError, BodyStore, BodyTooLarge, SpoolError
from tidegate.http.retry import GIVE_UP_STATUS, Decision, Failure, RetryPolicy, decide
from tidegate.http.retry_budget import RetryBudget

__all__ = [
    "GIVE_UP_STATUS",
    "BodyError",
    "BodyStore",
    "BodyTooLarge",
    "Decision",
    "Failure",
    "RetryBudget",
    "RetryPolicy",
    "SpoolError",
    "decide",
]
