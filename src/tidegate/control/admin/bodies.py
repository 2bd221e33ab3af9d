"""The admin API's request bodies as pydantic models: validated before anything changes, and
their JSON Schema is what the OpenAPI document (openapi.py) publishes for them.

A rejected body raises ApiError(400) with a message that names the field, in the words an
operator reads (`weight must be >= 0, not -1`), not pydantic's error dump.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tidegate.config.model import split_address
from tidegate.control.admin.operations import MAX_WEIGHT, ApiError

Body = TypeVar("Body", bound=BaseModel)


class NewInstance(BaseModel):
    """POST /api/pools/{pool}/instances: an instance to add (register)."""

    model_config = ConfigDict(extra="forbid", strict=True, title="NewInstance")

    address: str = Field(description="HOST:PORT; IPv6 as [ADDR]:PORT")
    weight: int = Field(default=1, ge=0, le=MAX_WEIGHT)
    meta: dict[str, str] = Field(
        default_factory=dict, description='free-form facts, e.g. {"supervisor": "http://127.0.0.1:9800"}'
    )

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("address is required: a string HOST:PORT")
        try:
            _, port = split_address(value)
        except ValueError as exc:
            raise ValueError(f"bad address: {exc}") from None
        if port == 0:
            raise ValueError(f"bad address: {value!r}: port 0")
        return value

    @property
    def host(self) -> str:
        return split_address(self.address)[0]

    @property
    def port(self) -> int:
        return split_address(self.address)[1]


class Weight(BaseModel):
    """PUT /api/pools/{pool}/instances/{address}/weight: the new weight (0 takes no new work)."""

    model_config = ConfigDict(extra="forbid", strict=True, title="Weight")

    weight: int = Field(ge=0, le=MAX_WEIGHT)


def parse_json_object(body: bytes) -> dict[str, Any]:
    if not body:
        raise ApiError(400, "a JSON object is required as the request body")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ApiError(400, "body must be a JSON object")
    return doc


def parse_body(model: type[Body], body: bytes) -> Body:
    """The request body as `model`, or ApiError(400) naming the first field that is wrong."""
    doc = parse_json_object(body)
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise ApiError(400, _message(model, doc, exc)) from None


def _message(model: type[BaseModel], doc: dict[str, Any], exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    extra = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden")
    if extra:
        allowed = ", ".join(model.model_fields)
        return f"unknown field(s) {', '.join(extra)}; allowed: {allowed}"
    err = errors[0]
    field = ".".join(str(part) for part in err["loc"]) or "body"
    given = err.get("input")
    ctx = err.get("ctx") or {}
    kind = err["type"]
    if kind == "missing":
        example = '{"weight": N}' if field == "weight" else "a string HOST:PORT" if field == "address" else ""
        return f"{field} is required" + (f": {example}" if example else "")
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind.startswith("int_"):
        return f"{field} must be an integer, not {json.dumps(given)}"
    if kind == "greater_than_equal":
        return f"{field} must be >= {ctx['ge']}, not {given}"
    if kind == "less_than_equal":
        return f"{field} must be <= {ctx['le']}, not {given}"
    if field.startswith("meta"):
        return 'meta must be an object of strings, e.g. {"supervisor": "http://…"}'
    return f"{field}: {err['msg']}"
