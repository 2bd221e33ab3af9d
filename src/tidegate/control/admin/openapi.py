"""The OpenAPI 3.1 document of the admin API, served at /openapi.json.

Written out by hand as data: the API is small, and tests check both that this is a valid
OpenAPI document and that real answers of a running tidegate validate against its schemas.
"""

from __future__ import annotations

from typing import Any

from tidegate.control.admin.operations import MAX_WEIGHT

_STATES = ["up", "slow-start", "draining", "down", "maint"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": {"$ref": "#/components/responses/BadRequest"},
    "401": {"$ref": "#/components/responses/Unauthorized"},
    "404": {"$ref": "#/components/responses/NotFound"},
    "405": {"$ref": "#/components/responses/MethodNotAllowed"},
}
# Calls that change something: with the etcd registry, 503 when etcd did not take the change.
_CHANGE_ERRORS = {**_ERRORS, "503": {"$ref": "#/components/responses/RegistryUnavailable"}}

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
            "meta": {"type": "object", "additionalProperties": {"type": "string"}},
            "origin": {
                "type": "string",
                "enum": ["config", "api"],
                "description": "api: registered through this API or the etcd registry (kept across reloads)",
            },
            "removed": {"type": "boolean", "description": "only in DELETE answers"},
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
    "Pools": {
        "type": "object",
        "required": ["pools"],
        "properties": {"pools": {"type": "array", "items": _ref("Pool")}},
        "additionalProperties": False,
    },
    "NewInstance": {
        "type": "object",
        "required": ["address"],
        "properties": {
            "address": {"type": "string", "description": "HOST:PORT; IPv6 as [ADDR]:PORT"},
            "weight": {"type": "integer", "minimum": 0, "maximum": MAX_WEIGHT, "default": 1},
            "meta": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": 'free-form facts, e.g. {"supervisor": "http://127.0.0.1:9800"}',
            },
        },
        "additionalProperties": False,
    },
    "Weight": {
        "type": "object",
        "required": ["weight"],
        "properties": {"weight": {"type": "integer", "minimum": 0, "maximum": MAX_WEIGHT}},
        "additionalProperties": False,
    },
}


def _state_action(verb: str, effect: str) -> dict[str, Any]:
    return {
        "post": {
            "operationId": f"{verb}Instance",
            "summary": effect,
            "parameters": [_POOL, _ADDRESS],
            "responses": {"200": _json(_ref("Instance"), "the instance after the change"), **_CHANGE_ERRORS},
        }
    }


def openapi_document() -> dict[str, Any]:
    instance_path = "/api/pools/{pool}/instances/{address}"
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
        "paths": {
            "/api/pools": {
                "get": {
                    "operationId": "listPools",
                    "summary": "every pool with its instances and their figures",
                    "responses": {"200": _json(_ref("Pools"), "all pools"), "401": _ERRORS["401"]},
                }
            },
            "/api/pools/{pool}": {
                "get": {
                    "operationId": "getPool",
                    "summary": "one pool",
                    "parameters": [_POOL],
                    "responses": {"200": _json(_ref("Pool"), "the pool"), **_ERRORS},
                }
            },
            "/api/pools/{pool}/instances": {
                "post": {
                    "operationId": "addInstance",
                    "summary": "add (register) an instance; it takes work at once",
                    "parameters": [_POOL],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("NewInstance")}},
                    },
                    "responses": {
                        "201": _json(_ref("Instance"), "the new instance"),
                        "409": {"$ref": "#/components/responses/Conflict"},
                        **_CHANGE_ERRORS,
                    },
                }
            },
            instance_path: {
                "get": {
                    "operationId": "getInstance",
                    "summary": "one instance",
                    "parameters": [_POOL, _ADDRESS],
                    "responses": {"200": _json(_ref("Instance"), "the instance"), **_ERRORS},
                },
                "delete": {
                    "operationId": "removeInstance",
                    "summary": "remove: drain first, remove once nothing is in flight or after the grace",
                    "parameters": [
                        _POOL,
                        _ADDRESS,
                        {
                            "name": "grace",
                            "in": "query",
                            "required": False,
                            "description": "seconds in-flight work may take (default: the process's --grace)",
                            "schema": {"type": "number", "minimum": 0, "maximum": 86400},
                        },
                    ],
                    "responses": {
                        "200": _json(_ref("Instance"), "removed now (nothing was in flight); removed: true"),
                        "202": _json(_ref("Instance"), "draining; removed once idle; removed: false"),
                        **_CHANGE_ERRORS,
                    },
                },
            },
            instance_path + "/drain": _state_action(
                "drain", "draining: no new work, in-flight work finishes"
            ),
            instance_path + "/enable": _state_action(
                "enable",
                "back in rotation (through slow-start when the pool has one; down while its health "
                "checks fail); ends an ejection and cancels a pending removal",
            ),
            instance_path + "/maint": _state_action("maint", "maintenance: out of rotation until enabled"),
            instance_path + "/weight": {
                "put": {
                    "operationId": "setWeight",
                    "summary": "set the weight (0 takes no new work)",
                    "parameters": [_POOL, _ADDRESS],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("Weight")}},
                    },
                    "responses": {
                        "200": _json(_ref("Instance"), "the instance after the change"),
                        **_CHANGE_ERRORS,
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus text exposition (tidegate_instance_* with labels pool, instance)",
                    "responses": {
                        "200": {
                            "description": "metrics",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "401": _ERRORS["401"],
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "this document",
                    "responses": {"200": _json({"type": "object"}, "the OpenAPI document")},
                }
            },
            "/": {
                "get": {
                    "operationId": "dashboard",
                    "summary": "the dashboard: one self-contained HTML page polling /api/pools",
                    "security": [{}],
                    "responses": {
                        "200": {
                            "description": "HTML",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": SCHEMAS,
            "responses": {
                name: _json(_ref("Error"), text)
                for name, text in (
                    ("BadRequest", "bad input (JSON, address, weight, field); nothing changed"),
                    ("Unauthorized", "admin.token is set and the Bearer token is missing or wrong"),
                    ("NotFound", "unknown pool, instance or route"),
                    ("MethodNotAllowed", "wrong method for this path (see Allow)"),
                    ("Conflict", "the instance is already in the pool"),
                    (
                        "RegistryUnavailable",
                        "[registry] type = etcd and etcd did not take the change; nothing changed anywhere",
                    ),
                )
            },
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "required when the config sets admin.token",
                }
            },
        },
    }
