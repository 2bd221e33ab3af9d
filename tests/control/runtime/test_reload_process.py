"""`tidegate run` + SIGHUP: [[http]] sections added to the file start, removed ones stop."""

from __future__ import annotations

import http.client
import signal
import socket
from collections.abc import Callable, Iterator

import pytest

from tidegate.testing.backends import Backend
from tidegate.testing.process import Proc


@pytest.fixture
def backend() -> Iterator[Backend]:
    with Backend("a") as b:
        yield b


def config(b: Backend, *listens: str) -> str:
    text = f'[[pools]]\nname = "web"\ninstances = [{{ address = "{b.address}" }}]\n'
    return text + "".join(f'[[http]]\nlisten = "{listen}"\npool = "web"\n' for listen in listens)


def reload(proc: Proc, text: str) -> int:
    proc.config_path.write_text(text)  # type: ignore[attr-defined]
    mark = len(proc.lines)
    proc.signal(signal.SIGHUP)
    proc.wait_for_new(r"tidegate: reloaded|reload refused", mark)
    return mark


def get(addr: tuple[str, int]) -> bytes:
    conn = http.client.HTTPConnection(*addr, timeout=10)
    try:
        conn.request("GET", "/")
        r = conn.getresponse()
        assert r.status == 200
        return r.read()
    finally:
        conn.close()


def test_sighup_starts_an_added_http_section_and_stops_a_removed_one(
    start_tidegate: Callable[..., Proc], backend: Backend
) -> None:
    proc = start_tidegate(config(backend, "127.0.0.1:0"))
    first = proc.address("http")
    mark = reload(proc, config(backend, "127.0.0.1:0", "127.0.0.1:0"))
    proc.wait_for_new(r"tidegate: http\.1 listening on", mark, timeout=10)
    added = proc.address("http.1")
    assert get(added) == b"a"
    mark = reload(proc, config(backend, "127.0.0.1:0"))
    proc.wait_for_new(r"http\.1: stopped", mark, timeout=10)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(added, timeout=5).close()
    assert get(first) == b"a"


# An [lvs] that cannot run, added by a reload: the reload is refused whole (test_reload_refused.py).
