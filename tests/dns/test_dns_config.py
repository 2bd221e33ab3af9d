"""[dns] config errors name the file, line and key."""

from __future__ import annotations

import pytest

from tidegate.config.errors import ConfigError
from tidegate.config.load import parse_config

HEAD = '[[pools]]\nname = "web"\n[dns]\nlisten = "127.0.0.1:0"\nzone = "example.test"\n'
NS = 'nameservers = ["ns1.example.test"]\n'


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(HEAD + text, "t.toml")
    return info.value.render()


def test_names_are_made_absolute() -> None:
    cfg = parse_config(
        HEAD
        + 'nameservers = ["ns1.example.test"]\n[[dns.records]]\nname = "www.example.test"\npool = "web"\n'
    )
    assert cfg.dns is not None
    assert cfg.dns.zone == "example.test." and cfg.dns.nameservers == ["ns1.example.test."]
    assert cfg.dns.records[0].name == "www.example.test."


def test_record_outside_the_zone() -> None:
    msg = _error(NS + '[[dns.records]]\nname = "www.example.org"\npool = "web"\n')
    assert "t.toml:8: dns.records[0].name: www.example.org. is outside the zone example.test." in msg


def test_record_listed_twice() -> None:
    rec = '[[dns.records]]\nname = "{}"\npool = "web"\n'
    msg = _error(NS + rec.format("www.example.test") + rec.format("WWW.example.test."))
    assert "t.toml:11: dns.records[1].name: WWW.example.test. is listed twice" in msg


@pytest.mark.parametrize("bad", ["a..b", "-a.test", "a b.test", "x" * 64 + ".test"])
def test_bad_names(bad: str) -> None:
    msg = _error(f'nameservers = ["{bad}"]\n')
    assert "t.toml:6: dns.nameservers" in msg and "is not a DNS label" in msg


def test_a_zone_without_name_servers_is_refused() -> None:
    assert "t.toml:3: dns.nameservers: needs at least one name server" in _error("")
