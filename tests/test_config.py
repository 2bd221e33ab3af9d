from __future__ import annotations

import pytest

from tidegate.config import ConfigError, parse_config
from tidegate.config.units import parse_duration, parse_size
from tidegate.testing.process import run_tidegate

GOOD = """\
[admin]
listen = "127.0.0.1:9900"

[[pools]]
name = "web"
scheduler = "round-robin"
hash_key = "source-ip"
slow_start = "10s"
instances = [
  { address = "127.0.0.1:9001" },
  { address = "127.0.0.1:9002", weight = 2 },
]
[pools.health]
type = "http"
path = "/healthz"
interval = "2s"
timeout = "1s"
rise = 2
fall = 3
[pools.outlier]
consecutive_failures = 5
ejection = "30s"

[[http]]
listen = "127.0.0.1:8080"
pool = "web"
routes = [ { host = "api.example.test", path_prefix = "/api", pool = "web" } ]
[http.limits]
max_header_bytes = "64KiB"
max_body_bytes = "1GiB"
body_in_memory = "1MiB"
client_header_timeout = "10s"
[http.retry]
tries = 3
budget = 0.2
statuses = [502, 503, 504]
"""


def test_interface_example_parses() -> None:
    cfg = parse_config(GOOD)
    pool = cfg.pools[0]
    assert pool.slow_start == 10.0
    assert [i.weight for i in pool.instances] == [1, 2]
    assert pool.health.interval == 2.0
    assert cfg.http[0].limits.max_header_bytes == 64 * 1024
    assert cfg.http[0].limits.max_body_bytes == 1024**3
    assert cfg.http[0].routes[0].pool == "web"
    assert cfg.http[0].request_id_header == "X-Request-Id"


@pytest.mark.parametrize(
    ("old", "new", "expect"),
    [
        ('interval = "2s"', 'interval = "2x"', ":16: pools[0].health.interval: bad duration"),
        ("rise = 2", "rise = 2\nbogus = 1", ":19: pools[0].health.bogus: unknown key"),
        ("weight = 2 }", "weight = -2 }", ":11: pools[0].instances[1].weight:"),
        ('pool = "web"\nroutes', 'pool = "nope"\nroutes', ":26: http[0].pool: unknown pool 'nope'"),
        ('scheduler = "round-robin"', 'scheduler = "fastest"', ":6: pools[0].scheduler:"),
        ('max_body_bytes = "1GiB"', 'max_body_bytes = "1GB"', ":30: http[0].limits.max_body_bytes: bad size"),
        ('hash_key = "source-ip"', 'hash_key = "header:"', ":7: pools[0].hash_key: must be"),
        ('listen = "127.0.0.1:8080"', 'listen = "nowhere"', ":25: http[0].listen:"),
        (
            'pool = "web"\nroutes',
            'pool = "web"\nrequest_id_header = "X Id"\nroutes',
            ":27: http[0].request_id_header: 'X Id' is not a header name",
        ),
        (
            'pool = "web"\nroutes',
            'pool = "web"\nrequest_id_header = "Host"\nroutes',
            ":27: http[0].request_id_header: 'Host' is a field the gateway handles",
        ),
    ],
)
def test_errors_name_line_and_key(old: str, new: str, expect: str) -> None:
    assert old in GOOD
    with pytest.raises(ConfigError) as info:
        parse_config(GOOD.replace(old, new, 1), "x.toml")
    assert "x.toml" + expect in info.value.render()


def test_bad_toml_names_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("[admin]\nlisten = \n", "y.toml")
    assert info.value.render().startswith("y.toml:2: not valid TOML")


def test_units() -> None:
    assert parse_size("64KiB") == 65536
    assert parse_size("1.5MiB") == 1572864
    assert parse_size(10) == 10
    assert parse_duration("250ms") == 0.25
    assert parse_duration("2m") == 120.0
    for bad in ("1GB", "-1", "x", True):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_check_command(tmp_path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(GOOD)
    r = run_tidegate("check", str(good))
    assert r.returncode == 0, r.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace("rise = 2", "rise = 0"))
    r = run_tidegate("check", str(bad))
    assert r.returncode == 2
    assert f"{bad}:18: pools[0].health.rise:" in r.stderr


def test_etcd_registry_config() -> None:
    cfg = parse_config(
        '[registry]\ntype = "etcd"\nendpoints = ["127.0.0.1:2379", "https://etcd.test:2379/"]\n'
        'prefix = "/tg/prod/"\nlease = "15s"\n'
    )
    assert cfg.registry.type == "etcd"
    assert cfg.registry.endpoints == ["http://127.0.0.1:2379", "https://etcd.test:2379"]
    assert cfg.registry.prefix == "/tg/prod/"
    assert cfg.registry.lease == 15.0
    default = parse_config('[registry]\ntype = "etcd"\n').registry
    assert (default.endpoints, default.prefix, default.lease) == (
        ["http://127.0.0.1:2379"],
        "/tidegate/",
        10.0,
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("endpoints = []", "registry.endpoints: needs at least one endpoint"),
        ('endpoints = ["ftp://a:1"]', "registry.endpoints: 'ftp://a:1': an etcd endpoint is http"),
        (
            'endpoints = ["http://a:1/v3"]',
            "registry.endpoints: 'http://a:1/v3': an etcd endpoint has no path",
        ),
        ('endpoints = ["127.0.0.1"]', "registry.endpoints: '127.0.0.1' is not HOST:PORT"),
        ('endpoints = ["127.0.0.1:0"]', "registry.endpoints: '127.0.0.1:0': port 0"),
        ('prefix = "tidegate"', "registry.prefix: 'tidegate': a key prefix starts and ends with /"),
        ('prefix = "/a//b/"', "registry.prefix: '/a//b/': a key prefix starts and ends with /"),
        ('lease = "1s"', "registry.lease: must be whole seconds from 2s to 1h"),
        ('lease = "2.5s"', "registry.lease: must be whole seconds from 2s to 1h"),
        ('lease = "10x"', "registry.lease: bad duration '10x'"),
        ("ttl = 3", "registry.ttl: unknown key"),
    ],
)
def test_etcd_registry_errors_name_file_line_and_key(line: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(f'[registry]\ntype = "etcd"\n{line}\n', "r.toml")
    assert info.value.render().startswith(f"r.toml:3: {message}"), info.value.render()


def test_dns_zone_needs_a_name_server() -> None:
    text = '[dns]\nlisten = "127.0.0.1:0"\nzone = "example.test."\nnameservers = []\n'
    with pytest.raises(ConfigError) as info:
        parse_config(text, "d.toml")
    assert info.value.render().startswith("d.toml:4: dns.nameservers: needs at least one name server")
