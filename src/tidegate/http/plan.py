"""Everything one [[http]] section decides, computed once per start or reload.

Connections read the current `ListenerPlan` at the start of each request, so a reload applies to new
requests while requests in flight finish under the plan they started with.
"""

from __future__ import annotations

from collections.abc import Mapping

from tidegate.balancing.pool import Pool
from tidegate.config.model import HttpConfig
from tidegate.http.attempts import RetryBudget
from tidegate.http.routing import RouteTable, build_routes

# Raw bytes a head may take beyond its limits (line endings, the last partial read) before the
# connection is cut even though no single header crossed `max_header_bytes` yet.
_HEAD_SLACK = 4096


class ListenerPlan:
    __slots__ = (
        "body_in_memory",
        "connect_timeout",
        "head_guard",
        "header_timeout",
        "idle_timeout",
        "max_body_bytes",
        "max_header_bytes",
        "max_header_fields",
        "max_request_line",
        "plain_head_max",
        "response_timeout",
        "rid_field",
        "rid_name",
        "rid_open",
        "routes",
        "tick",
        "tmpdir",
    )

    def __init__(self, cfg: HttpConfig, pools: Mapping[str, Pool], budgets: dict[str, RetryBudget]) -> None:
        lim = cfg.limits
        self.routes: RouteTable = build_routes(cfg, pools, budgets)
        self.max_header_bytes = lim.max_header_bytes
        self.max_request_line = lim.max_request_line_bytes
        self.max_header_fields = lim.max_header_fields
        self.head_guard = lim.max_header_bytes + lim.max_request_line_bytes + _HEAD_SLACK
        # A head no longer than both limits is within each: the fast lane need not count.
        self.plain_head_max = min(lim.max_header_bytes, lim.max_request_line_bytes)
        # The request id's header (http/request_id.py): its lowercase name (b"": off) and the
        # start of its line as the gateway writes it.
        self.rid_name = cfg.request_id_header.lower().encode()
        self.rid_field = cfg.request_id_header.encode() + b": "
        self.rid_open = b"\r\n" + self.rid_field if self.rid_name else b""
        self.max_body_bytes = lim.max_body_bytes
        self.body_in_memory = lim.body_in_memory
        self.tmpdir = lim.spool_dir
        self.header_timeout = lim.client_header_timeout
        self.idle_timeout = lim.idle_timeout
        self.connect_timeout = lim.upstream_connect_timeout
        self.response_timeout = lim.upstream_response_timeout
        # The sweeper's period: a quarter of the shortest timeout, within [50 ms, 1 s].
        shortest = min(self.header_timeout, self.idle_timeout, self.response_timeout)
        self.tick = min(1.0, max(0.05, shortest / 4))
