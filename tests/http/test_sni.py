"""Which certificate answers a server name (http/sni.py): RFC 6125 wildcards, exact before wildcard."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tidegate.http.sni import NameIndex, is_address, pick, wildcard_matches


@pytest.mark.parametrize(
    ("pattern", "host", "match"),
    [
        ("*.example.com", "a.example.com", True),
        ("*.example.com", "A.Example.COM.", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "a.b.example.com", False),
        ("*.example.com", ".example.com", False),
        ("*.example.com", "a.example.org", False),
        ("*.1.2.3", "4.1.2.3", False),  # never an IP address
        ("*.*.example.com", "a.b.example.com", False),
        ("a.example.com", "a.example.com", False),  # not a wildcard
    ],
)
def test_wildcards(pattern: str, host: str, match: bool) -> None:
    assert wildcard_matches(pattern, host) is match


def test_pick() -> None:
    certs = [("a.test",), ("*.wild.test", "b.test"), ("x.wild.test",)]
    assert pick(certs, None) == 0
    assert pick(certs, "") == 0
    assert pick(certs, "nowhere.test") == 0
    assert pick(certs, "B.TEST.") == 1
    assert pick(certs, "y.wild.test") == 1
    assert pick(certs, "x.wild.test") == 2  # the exact name beats the earlier wildcard
    assert pick([], "a.test") == 0


label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=10)


@given(st.lists(st.lists(label, min_size=1, max_size=3).map(".".join), min_size=1, max_size=5), label)
def test_an_exact_name_always_finds_its_certificate(names: list[str], extra: str) -> None:
    certs = [(n,) for n in names]
    for i, n in enumerate(names):
        assert pick(certs, n.upper()) == names.index(n) <= i
    assert 0 <= pick(certs, extra + ".unlisted") < len(certs)


@given(label, st.lists(label, min_size=1, max_size=3).map(".".join), label)
def test_a_wildcard_covers_exactly_one_label(first: str, domain: str, second: str) -> None:
    assume(not is_address(f"{first}.{domain}"))  # "0.0.0.0": an address, which no wildcard matches
    assert wildcard_matches("*." + domain, f"{first}.{domain}")
    assert not wildcard_matches("*." + domain, f"{second}.{first}.{domain}")
    assert not wildcard_matches("*." + domain, domain)


pattern = st.one_of(
    st.lists(label, min_size=1, max_size=3).map(".".join),
    st.lists(label, min_size=1, max_size=3).map(lambda ls: "*." + ".".join(ls)),
    st.sampled_from(["*.*.a", "a.*.b", "*", "1.2.3.4", "*.2.3.4", "A.B.", "*.A.b."]),
)
host = st.one_of(
    st.none(),
    st.just(""),
    st.lists(label, min_size=1, max_size=4).map(".".join),
    st.sampled_from(["1.2.3.4", "4.2.3.4", "x.a", "a.b", "X.A.B.", ".a", "a."]),
)


@given(st.lists(st.lists(pattern, min_size=1, max_size=4), min_size=1, max_size=5), host)
def test_the_index_picks_as_the_plain_rule(names: list[list[str]], server_name: str | None) -> None:
    assert NameIndex(names).pick(server_name) == pick(names, server_name)
    if server_name:
        assert NameIndex(names).pick(server_name.upper() + ".") == pick(names, server_name)
