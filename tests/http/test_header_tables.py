"""The exact-spelling shortcut table agrees with the lowercase tables it short-cuts."""

from __future__ import annotations

from tidegate.http.headers import FORWARD, RESPONSE_EXACT, RESPONSE_HEADERS


def test_every_exact_spelling_means_what_its_lowercase_name_means() -> None:
    for name, kind in RESPONSE_EXACT.items():
        expected = RESPONSE_HEADERS.get(name.lower())
        if kind == FORWARD:
            assert expected is None, name
            assert not name.lower().startswith(b"proxy-"), name
        else:
            assert kind is expected, name
