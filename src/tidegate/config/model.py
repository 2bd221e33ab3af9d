"""The typed model of the config file (docs/configuration.md). Every section rejects unknown keys.

The models are plain data: the layers that run read them, none of them does I/O. Sizes are bytes
(int) and durations seconds (float) once validated, whatever unit the user wrote.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from tidegate.config.units import parse_duration, parse_size

Size = Annotated[int, BeforeValidator(parse_size)]
Duration = Annotated[float, BeforeValidator(parse_duration)]

SCHEDULERS = (
    "round-robin",
    "weighted-round-robin",
    "least-connections",
    "p2c",
    "random",
    "consistent-hash",
    "maglev",
    "source-hash",
)
SchedulerName = Literal[
    "round-robin",
    "weighted-round-robin",
    "least-connections",
    "p2c",
    "random",
    "consistent-hash",
    "maglev",
    "source-hash",
]


def split_address(address: str) -> tuple[str, int]:
    """("127.0.0.1", 9001) from "127.0.0.1:9001"; IPv6 as "[::1]:9001"; names allowed."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"{address!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        ipaddress.IPv6Address(host)
    elif ":" in host:
        raise ValueError(f"{address!r}: write IPv6 addresses as [ADDR]:PORT")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"{address!r}: port out of range")
    return host, port


def _check_address(value: str) -> str:
    split_address(value)
    return value


Address = Annotated[
    str, BeforeValidator(lambda v: v if not isinstance(v, str) else v.strip()), Field(min_length=3)
]


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")  # RFC 9110 §5.6.2, and not absurdly long
# Fields the gateway frames, routes by or states itself: never a request id's.
_OWN_FIELDS = frozenset(
    ["host", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "trailer", "upgrade", "expect", "via", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "date", "server"]
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InstanceConfig(_Section):
    address: Address
    weight: int = Field(default=1, ge=0, le=1_000_000)

    _addr = field_validator("address")(_check_address)


class HealthConfig(_Section):
    type: Literal["http", "tcp", "none"] = "none"
    path: str = "/healthz"
    expect_status: int = Field(default=200, ge=100, le=599)
    interval: Duration = 2.0
    timeout: Duration = 1.0
    rise: int = Field(default=2, ge=1)
    fall: int = Field(default=3, ge=1)

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("must start with /")
        return v


class OutlierConfig(_Section):
    consecutive_failures: int = Field(default=5, ge=0)  # 0 switches passive detection off
    ejection: Duration = 30.0
    max_ejection: Duration = 300.0
    max_ejected_percent: int = Field(default=50, ge=0, le=100)


class PoolConfig(_Section):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    scheduler: SchedulerName = "round-robin"
    hash_key: str = "source-ip"
    slow_start: Duration = 0.0
    instances: list[InstanceConfig] = Field(default_factory=list)
    health: HealthConfig = Field(default_factory=HealthConfig)
    outlier: OutlierConfig = Field(default_factory=OutlierConfig)

    @field_validator("hash_key")
    @classmethod
    def _hash_key(cls, v: str) -> str:
        kind, _, arg = v.partition(":")
        if kind in ("source-ip", "uri") and not arg:
            return v
        if kind in ("header", "cookie") and arg:
            return v
        raise ValueError("must be source-ip, uri, header:NAME or cookie:NAME")

    @field_validator("instances")
    @classmethod
    def _unique(cls, v: list[InstanceConfig]) -> list[InstanceConfig]:
        seen: set[str] = set()
        for inst in v:
            if inst.address in seen:
                raise ValueError(f"instance {inst.address} is listed twice")
            seen.add(inst.address)
        return v


class RouteConfig(_Section):
    host: str | None = None
    path_prefix: str = "/"
    pool: str
    idempotent: bool = False  # the route declares its non-idempotent methods safe to retry

    @field_validator("path_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("must start with /")
        return v


class LimitsConfig(_Section):
    max_header_bytes: Size = 64 * 1024
    # Real apps send long query strings: 32 KiB (nginx's large_client_header_buffers size is 8k,
    # HAProxy's bufsize 16k; both have been raised by users for this), within max_header_bytes.
    max_request_line_bytes: Size = 32 * 1024
    # Fields in one head: 431 beyond. Real clients send up to ~100 (HAProxy's 101 breaks some apps).
    max_header_fields: int = Field(default=256, ge=1, le=10_000)
    max_body_bytes: Size = 1024**3
    body_in_memory: Size = 1024**2
    client_header_timeout: Duration = 10.0
    idle_timeout: Duration = 60.0
    upstream_connect_timeout: Duration = 2.0
    upstream_response_timeout: Duration = 60.0
    spool_dir: str | None = None  # where bodies beyond body_in_memory spool; None = the system's temp dir


class RetryConfig(_Section):
    tries: int = Field(default=3, ge=1, le=20)
    budget: float = Field(default=0.2, ge=0.0, le=10.0)
    statuses: list[int] = Field(default_factory=lambda: [502, 503, 504])

    @field_validator("statuses")
    @classmethod
    def _statuses(cls, v: list[int]) -> list[int]:
        for s in v:
            if not 100 <= s <= 599:
                raise ValueError(f"{s} is not an HTTP status")
        return v


class CertificateConfig(_Section):
    cert: str = Field(min_length=1)  # PEM: the certificate, then its chain
    key: str = Field(min_length=1)  # PEM: its private key


Alpn = Literal["h2", "http/1.1"]


def _default_alpn() -> list[Alpn]:
    return ["h2", "http/1.1"]


class HttpTlsConfig(_Section):
    """TLS termination on an [[http]] listener (http/tls.py). The files are read when the process
    starts and on every reload; `tidegate check` reads them too."""

    certificates: list[CertificateConfig] = Field(min_length=1)
    min_version: Literal["1.2", "1.3"] = "1.2"
    alpn: list[Alpn] = Field(default_factory=_default_alpn, min_length=1)
    handshake_timeout: Duration = 10.0


class HttpConfig(_Section):
    listen: Address
    pool: str | None = None
    routes: list[RouteConfig] = Field(default_factory=list)
    workers: int = Field(default=1, ge=1, le=256)
    access_log: str | None = None  # a file path, "-" for stdout; None switches it off
    # The request id's header (http/request_id.py): taken from the client or made, passed to the
    # instance, returned to the client, logged. "" switches it off.
    request_id_header: str = "X-Request-Id"
    tls: HttpTlsConfig | None = None
    # HTTP/2 with prior knowledge (h2c) on a cleartext listener, next to HTTP/1.1 (docs/configuration.md);
    # a TLS listener offers h2 by ALPN ([http.tls] alpn)
    http2: bool = False
    # Client connections open at once; at the limit the listener pauses (the kernel's backlog
    # holds new clients) until one closes. None: a share of the open-file limit (fdlimit.py).
    max_connections: int | None = Field(default=None, ge=1)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    retry: RetryConfig = Field(default_factory=RetryConfig)

    _addr = field_validator("listen")(_check_address)

    @field_validator("request_id_header")
    @classmethod
    def _header_name(cls, v: str) -> str:
        if v and not _TOKEN.fullmatch(v):
            raise ValueError(f"{v!r} is not a header name (RFC 9110 token characters), or \"\" for off")
        if v.lower() in _OWN_FIELDS or v.lower().startswith("proxy-"):
            raise ValueError(f"{v!r} is a field the gateway handles itself")
        return v

    @model_validator(mode="after")
    def _has_a_pool(self) -> HttpConfig:
        if self.pool is None and not self.routes:
            raise ValueError("needs a default pool or at least one route")
        return self


class TcpConfig(_Section):
    listen: Address
    pool: str
    connect_timeout: Duration = 2.0
    idle_timeout: Duration = 600.0
    drain_grace: Duration = 30.0
    proxy_protocol: Literal["off", "v1", "v2"] = "off"
    connect_tries: int = Field(default=3, ge=1, le=20)  # total attempts, each on another instance
    workers: int = Field(default=1, ge=1, le=256)
    # As [[http]]'s: per process, None a share of the open-file limit (fdlimit.py).
    max_connections: int | None = Field(default=None, ge=1)

    _addr = field_validator("listen")(_check_address)


_DNS_LABEL = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")


def dns_name(v: str) -> str:
    """The name made absolute ("www.example.test."), or a ValueError saying what is wrong."""
    v = v if v.endswith(".") else v + "."
    if v == ".":
        return v
    labels = v[:-1].split(".")
    for label in labels:
        if not _DNS_LABEL.match(label):
            raise ValueError(f"{v!r}: {label!r} is not a DNS label (letters, digits, -, _; 1-63)")
    if len(v) > 254:
        raise ValueError(f"{v!r} is longer than 253 characters")
    return v


class DnsRecordConfig(_Section):
    name: str
    pool: str
    ttl: int = Field(default=30, ge=0, le=2**31 - 1)
    answers: int = Field(default=2, ge=1, le=64)

    @field_validator("name")
    @classmethod
    def _fqdn(cls, v: str) -> str:
        return dns_name(v)


class DnsConfig(_Section):
    listen: Address
    zone: str
    nameservers: list[str] = Field(default_factory=list, validate_default=True)
    negative_ttl: int = Field(default=60, ge=0)
    records: list[DnsRecordConfig] = Field(default_factory=list)
    workers: int = Field(default=1, ge=1, le=256)
    # DNS-over-TCP connections open at once, as [[http]]'s max_connections.
    max_connections: int | None = Field(default=None, ge=1)

    _addr = field_validator("listen")(_check_address)

    @field_validator("zone")
    @classmethod
    def _fqdn(cls, v: str) -> str:
        return dns_name(v)

    @field_validator("nameservers")
    @classmethod
    def _ns(cls, v: list[str]) -> list[str]:
        if not v:
            # The apex's NS set and the SOA's MNAME come from here; a zone cannot be served without.
            raise ValueError('needs at least one name server, e.g. ["ns1.example.test."]')
        return [dns_name(n) for n in v]


class LvsTimeoutsConfig(_Section):
    """Seconds a connection entry lives after its last packet, per state (IPVS's defaults)."""

    established: Duration = Field(default=900.0, gt=0)
    syn_recv: Duration = Field(default=60.0, gt=0)
    fin_wait: Duration = Field(default=120.0, gt=0)
    time_wait: Duration = Field(default=120.0, gt=0)
    close: Duration = Field(default=10.0, gt=0)
    close_wait: Duration = Field(default=60.0, gt=0)
    last_ack: Duration = Field(default=30.0, gt=0)
    udp: Duration = Field(default=300.0, gt=0)


class LvsConfig(_Section):
    mode: Literal["nat", "tun", "dr"] = "dr"
    engine: Literal["userspace", "ipvs"] = "userspace"
    vip: Address
    interface: str
    pool: str
    protocol: Literal["tcp", "udp"] = "tcp"
    timeouts: LvsTimeoutsConfig = Field(default_factory=LvsTimeoutsConfig)

    _addr = field_validator("vip")(_check_address)

    @field_validator("vip")
    @classmethod
    def _vip_ipv4(cls, v: str) -> str:
        host, _ = split_address(v)
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError("the VIP is an IPv4 address and port, e.g. 198.18.0.100:80") from None
        return v


class AdminConfig(_Section):
    listen: Address = "127.0.0.1:9900"
    token: str | None = None

    _addr = field_validator("listen")(_check_address)


def etcd_endpoint(value: str) -> str:
    """ "http://HOST:PORT" from "HOST:PORT", "http://HOST:PORT" or "https://HOST:PORT" (a trailing
    slash allowed): the base URL of an etcd member's JSON gateway."""
    text = value.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "http", text
    if scheme not in ("http", "https"):
        raise ValueError(f"{value!r}: an etcd endpoint is http://HOST:PORT or https://HOST:PORT")
    rest = rest.rstrip("/")
    if "/" in rest:
        raise ValueError(f"{value!r}: an etcd endpoint has no path, e.g. http://127.0.0.1:2379")
    _, port = split_address(rest)
    if port == 0:
        raise ValueError(f"{value!r}: port 0")
    return f"{scheme}://{rest}"


def etcd_prefix(value: str) -> str:
    if not value.startswith("/") or not value.endswith("/") or "//" in value:
        raise ValueError(f"{value!r}: a key prefix starts and ends with / (e.g. /tidegate/)")
    if any(c.isspace() for c in value):
        raise ValueError(f"{value!r}: no spaces in a key prefix")
    return value


class RegistryConfig(_Section):
    """Where the instance registry and the operator's state live: this file only ("file"), or an
    etcd cluster shared by several tidegate processes ("etcd", docs/architecture.md, "Several processes")."""

    type: Literal["file", "etcd"] = "file"
    endpoints: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:2379"])
    prefix: str = "/tidegate/"
    # The TTL of what this process keeps alive in etcd (its presence record); etcd counts whole
    # seconds and will not keep a lease under its election timeout, hence the floor.
    lease: Duration = 10.0

    @field_validator("endpoints")
    @classmethod
    def _endpoints(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError('needs at least one endpoint, e.g. ["http://127.0.0.1:2379"]')
        return [etcd_endpoint(e) for e in v]

    _prefix = field_validator("prefix")(etcd_prefix)

    @field_validator("lease")
    @classmethod
    def _lease(cls, v: float) -> float:
        if v != int(v) or not 2 <= v <= 3600:
            raise ValueError("must be whole seconds from 2s to 1h, e.g. 10s")
        return v


class Config(_Section):
    admin: AdminConfig | None = None
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    pools: list[PoolConfig] = Field(default_factory=list)
    http: list[HttpConfig] = Field(default_factory=list)
    tcp: list[TcpConfig] = Field(default_factory=list)
    dns: DnsConfig | None = None
    lvs: LvsConfig | None = None

    def pool(self, name: str) -> PoolConfig:
        for p in self.pools:
            if p.name == name:
                return p
        raise KeyError(name)
