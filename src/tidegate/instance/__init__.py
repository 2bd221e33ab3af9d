"""The real-server side: run any ASGI app drain-aware, and supervise N instances of it.

`DrainMiddleware` is the part to use under your own ASGI server; `python -m tidegate.instance`
and `tidegate serve` run apps on uvicorn with the drain runtime (runtime.py).
"""

from tidegate.instance.drain_state import DrainState
from tidegate.instance.middleware import DrainMiddleware

__all__ = ["DrainMiddleware", "DrainState"]
