"""SIGHUP starts [[tcp]] sections added to the file and stops removed ones, as an nginx or HAProxy
reload would; a reload whose new listener cannot bind is refused whole."""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable, Iterator

import pytest

from tidegate.testing.process import Proc
from tidegate.testing.tcp_peers import ThreadedNamedEcho

MIB = 1 << 20


@pytest.fixture
def echo() -> Iterator[ThreadedNamedEcho]:
    server = ThreadedNamedEcho("a")
    yield server
    server.close()


def config(pool: str, *listens: str) -> str:
    text = f'[[pools]]\nname = "p"\ninstances = [{{ address = "{pool}" }}]\n'
    for listen in listens:
        text += f'[[tcp]]\nlisten = "{listen}"\npool = "p"\nidle_timeout = "20s"\n'
    return text


def connect(address: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(address, timeout=10)
    name = b""
    while not name.endswith(b"\n"):
        chunk = sock.recv(1)
        assert chunk, "closed before the instance's name"
        name += chunk
    assert name == b"a\n"
    return sock


def echo_through(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    got = bytearray()
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        assert chunk, "closed mid-transfer"
        got += chunk
    return bytes(got)


def reload(proc: Proc, text: str) -> int:
    """Write the file, SIGHUP, wait until the reload is over; the index of its first log line."""
    proc.config_path.write_text(text)  # type: ignore[attr-defined]
    mark = len(proc.lines)
    proc.signal(signal.SIGHUP)
    proc.wait_for_new(r"tidegate: reloaded|reload refused", mark)
    return mark


def test_sighup_starts_an_added_section_and_stops_a_removed_one_gracefully(
    start_tidegate: Callable[..., Proc], echo: ThreadedNamedEcho
) -> None:
    proc = start_tidegate(config(echo.address, "127.0.0.1:0"))
    first = proc.address("tcp")

    reload(proc, config(echo.address, "127.0.0.1:0", "127.0.0.1:0"))
    proc.wait_for(r"tidegate: tcp\.1 listening on", timeout=5)
    added = proc.address("tcp.1")
    assert added != first
    payload = bytes(range(256)) * 4096  # 1 MiB
    with connect(added) as sock:
        assert echo_through(sock, payload) == payload
    held = connect(added)  # in flight across the removal

    reload(proc, config(echo.address, "127.0.0.1:0"))
    proc.wait_for(r"tcp\.1: .*stopping", timeout=5)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(added, timeout=5).close()
    # The connection it had finishes its transfer, then the listener is gone for good.
    assert echo_through(held, payload) == payload
    held.close()
    proc.wait_for(r"tcp\.1: stopped", timeout=10)
    # The section that stayed never stopped serving.
    with connect(first) as sock:
        assert echo_through(sock, b"still here") == b"still here"


def test_a_reload_whose_new_listener_cannot_bind_is_refused_whole(
    start_tidegate: Callable[..., Proc], echo: ThreadedNamedEcho
) -> None:
    proc = start_tidegate(config(echo.address, "127.0.0.1:0"))
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        # Two new sections: one that would bind, one whose address is taken.
        mark = reload(proc, config(echo.address, "127.0.0.1:0", "127.0.0.1:0", busy))
        refusal = proc.wait_for_new(r"reload refused.*", mark, timeout=5).group(0)
        assert busy in "\n".join(proc.lines[mark:]), proc.output()
        assert "tcp" in refusal
        # Nothing of it applied: the bindable one did not start either.
        assert not any("listening on" in line for line in proc.lines[mark:]), proc.output()
        assert "tcp.1" not in proc.listening
    # The process still serves as before, and a later good reload applies.
    with connect(proc.address("tcp")) as sock:
        assert echo_through(sock, b"ok") == b"ok"
    mark = reload(proc, config(echo.address, "127.0.0.1:0", "127.0.0.1:0"))
    proc.wait_for_new(r"tidegate: tcp\.\d+ listening on", mark, timeout=5)
