"""The OpenAPI 3.1 document of the admin API, served at /openapi.json.

The paths come from the route table (routes.py) and the request bodies' schemas from their
pydantic models (bodies.py); the answers' schemas are written out here as data. Tests check both
that this is a valid OpenAPI document and that real answers of a running tidegate validate
against its schemas.
"""

from __future__ import annotations

from typing import Any

from tidegate.control.admin.routes import ROUTES, Reply, Route

_STATES = ["up", "slow-start", "draining", "down", "maint"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_POOL = {"name": "pool", "in": "path", "required": True, "schema": {"type": "string"}}
_ADDRESS = {
    "name": "address",
    "in": "path",
    "required": True,
    "description": "HOST:PORT as listed in the pool, e.g. 127.0.0.1:9001 or [::1]:9001",
    "schema": {"type": "string"},
}

_COUNT = {"type": "integer", "minimum": 0}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
        "additionalProperties": False,
    },
    "Instance": {
        "type": "object",
        "required": [
            "address",
            "state",
            "weight",
            "effective_weight",
            "ramp",
            "connections",
            "iops",
            "requests",
            "bytes_in",
            "bytes_out",
            "failures",
            "retries",
            "latency",
            "meta",
            "origin",
        ],
        "properties": {
            "address": {"type": "string"},
            "state": {"type": "string", "enum": _STATES},
            "weight": {"type": "integer", "minimum": 0},
            "effective_weight": {
                "type": "number",
                "description": "weight * slow-start ramp; 0 when out of rotation",
            },
            "ramp": {"type": "number", "minimum": 0, "maximum": 1},
            "connections": {**_COUNT, "description": "requests (L4: connections) in service now"},
            "iops": {
                "type": "number",
                "minimum": 0,
                "description": "completed requests per second, 10 s window",
            },
            "requests": {**_COUNT, "description": "completed requests (L4: connections)"},
            "bytes_in": {**_COUNT, "description": "bytes from clients to the instance"},
            "bytes_out": {**_COUNT, "description": "bytes from the instance to clients"},
            "failures": {**_COUNT, "description": "attempts that failed on this instance"},
            "retries": {**_COUNT, "description": "attempts here that retried a failure elsewhere"},
            "latency": {
                "type": "object",
                "required": ["count", "sum_seconds"],
                "properties": {"count": _COUNT, "sum_seconds": {"type": "number", "minimum": 0}},
            },
            "responses": {
                "type": "object",
                "description": "HTTP responses the instance gave to clients, by status class",
                "required": ["1xx", "2xx", "3xx", "4xx", "5xx"],
                "properties": {c: _COUNT for c in ("1xx", "2xx", "3xx", "4xx", "5xx")},
            },
            "meta": {"type": "object", "additionalProperties": {"type": "string"}},
            "origin": {
                "type": "string",
                "enum": ["config", "api"],
                "description": "api: registered through this API or the etcd registry (kept across reloads)",
            },
            "removed": {"type": "boolean", "description": "only in DELETE answers"},
            "version": {
                "type": ["string", "null"],
                "description": "meta.version, which `tidegate serve` registers when the instance tells it",
            },
            "in_state_s": {
                "type": ["number", "null"],
                "minimum": 0,
                "description": "seconds since it entered its state (or since this process first saw it)",
            },
        },
        "additionalProperties": {
            "type": "object",
            "description": "per-instance facts of a layer, under its name (health, dns, lvs, …)",
        },
    },
    "Totals": {
        "type": "object",
        "required": ["connections", "iops", "requests", "bytes_in", "bytes_out", "failures", "retries"],
        "properties": {
            k: {"type": "number", "minimum": 0}
            for k in ("connections", "iops", "requests", "bytes_in", "bytes_out", "failures", "retries")
        },
    },
    "Pool": {
        "type": "object",
        "required": ["name", "scheduler", "hash_key", "slow_start", "totals", "instances"],
        "properties": {
            "name": {"type": "string"},
            "scheduler": {"type": "string"},
            "hash_key": {"type": "string"},
            "slow_start": {"type": "number", "minimum": 0},
            "totals": _ref("Totals"),
            "instances": {"type": "array", "items": _ref("Instance")},
        },
        "additionalProperties": {
            "type": "object",
            "description": "facts of a layer about the pool, under its name (health, dns, lvs, …)",
        },
    },
    "Series": {
        "type": "object",
        "description": "one list per metric, aligned with times; null where there is no point",
        "additionalProperties": {"type": "array", "items": {"type": ["number", "null"]}},
    },
    "History": {
        "type": "object",
        "required": ["interval", "metrics", "times", "pools"],
        "properties": {
            "interval": {"type": "number", "description": "seconds between points"},
            "metrics": {
                "type": "array",
                "items": {"type": "string"},
                "description": "requests_per_s, failures_per_s, retries_per_s, bytes_in_per_s, "
                "bytes_out_per_s, responses_4xx_per_s, responses_5xx_per_s (rates over the time "
                "since the previous point), connections (at "
                "the point), p50_ms, p99_ms (of the answers in between, from the latency buckets)",
            },
            "times": {"type": "array", "items": {"type": "number"}, "description": "seconds since the epoch"},
            "pools": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "required": ["pool", "instances"],
                    "properties": {
                        "pool": _ref("Series"),
                        "instances": {"type": "object", "additionalProperties": _ref("Series")},
                    },
                },
            },
        },
        "additionalProperties": False,
    },
    "Event": {
        "type": "object",
        "required": ["time", "pool", "address", "old", "new", "cause", "kind"],
        "properties": {
            "time": {"type": "number", "description": "seconds since the epoch"},
            "pool": {"type": "string"},
            "address": {"type": "string"},
            "old": {"enum": [*_STATES, None], "description": "null: it joined the pool"},
            "new": {"enum": [*_STATES, None], "description": "null: it left the pool"},
            "cause": {"type": "string"},
            "kind": {
                "type": "string",
                "enum": [
                    "operator",
                    "rollout",
                    "health",
                    "outlier",
                    "instance",
                    "slow-start",
                    "pool",
                    "other",
                ],
            },
        },
        "additionalProperties": False,
    },
    "Events": {
        "type": "object",
        "required": ["events", "recorded"],
        "properties": {
            "events": {"type": "array", "items": _ref("Event")},
            "recorded": {
                **_COUNT,
                "description": "events recorded since start (the log keeps the last 1000)",
            },
        },
        "additionalProperties": False,
    },
    "Pools": {
        "type": "object",
        "required": ["pools"],
        "properties": {"pools": {"type": "array", "items": _ref("Pool")}},
        "additionalProperties": False,
    },
}


SCHEMAS["SelfUpgrade"] = {
    "type": "object",
    "required": ["upgraded", "pid"],
    "properties": {
        "upgraded": {"type": "boolean"},
        "pid": {"type": "integer", "description": "the new process, current from now on"},
    },
    "additionalProperties": False,
}

_ERROR_RESPONSES = {
    400: ("BadRequest", "bad input (JSON, address, weight, field); nothing changed"),
    401: ("Unauthorized", "admin.token is set and the Bearer token is missing or wrong"),
    404: ("NotFound", "unknown pool, instance or route"),
    405: ("MethodNotAllowed", "wrong method for this path (see Allow)"),
    409: ("Conflict", "the instance is already in the pool; a self-upgrade is under way already"),
    500: ("UpgradeFailed", "the new process did not start or become ready; this one serves on (why: error)"),
    503: (
        "RegistryUnavailable",
        "[registry] type = etcd and etcd could not be reached (the change was never sent) or"
        " refused it; nothing changed anywhere",
    ),
    504: (
        "RegistryOutcomeUnknown",
        "[registry] type = etcd and etcd did not answer in time after the change was sent: it may"
        " still be applied (outcome unknown); every process converges on what etcd holds, and the"
        " log says whether it was applied",
    ),
}

_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "a file name, e.g. uPlot.iife.min.js",
    "schema": {"type": "string"},
}
_PATH_PARAMETERS: dict[str, dict[str, Any]] = {"pool": _POOL, "address": _ADDRESS, "name": _NAME}


def _reply(reply: Reply) -> dict[str, Any]:
    if reply.media != "application/json":
        return {"description": reply.description, "content": {reply.media: {"schema": {"type": "string"}}}}
    schema = {"type": "object"} if reply.schema in (None, "object") else _ref(reply.schema)
    return _json(schema, reply.description)


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": route.operation_id, "summary": route.summary}
    parameters = [_PATH_PARAMETERS[name] for name in route.params()] + list(route.query)
    if parameters:
        op["parameters"] = parameters
    if route.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(route.body.__name__)}},
        }
    responses: dict[str, Any] = {str(r.status): _reply(r) for r in route.replies}
    for status in sorted(route.errors):
        responses[str(status)] = {"$ref": f"#/components/responses/{_ERROR_RESPONSES[status][0]}"}
    op["responses"] = responses
    if route.public:
        op["security"] = [{}]
    return op


def _paths() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return paths


def _schemas() -> dict[str, Any]:
    bodies = {route.body for route in ROUTES if route.body is not None}
    made = {
        model.__name__: model.model_json_schema(ref_template="#/components/schemas/{model}")
        for model in sorted(bodies, key=lambda m: m.__name__)
    }
    return {**SCHEMAS, **made}


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tidegate admin API",
            "version": "1",
            "description": (
                "Pools and their instances: the three figures (connections, IOPS, bytes in/out), "
                "states, weights. Operator changes apply to the next scheduling decision. A rejected "
                'call changes nothing and answers {"error": …} with a 4xx status.'
            ),
        },
        "security": [{}, {"bearerAuth": []}],
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "responses": {name: _json(_ref("Error"), text) for name, text in _ERROR_RESPONSES.values()},
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "required when the config sets admin.token",
                }
            },
        },
    }
