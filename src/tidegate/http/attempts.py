"""The names the attempt loop uses from the retry modules (helper `retry`'s), in one place."""

from tidegate.http.body_store import BodyError, BodyStore, BodyTooLarge, SpoolError
from tidegate.http.retry import Decision, Failure, RetryPolicy, decide
from tidegate.http.retry_budget import RetryBudget

__all__ = [
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
