"""TLS termination on [[http]] (http/tls.py), through a real `tidegate run`: SNI with two
certificates (Python's ssl and curl), a certificate swapped by SIGHUP while a kept-alive TLS
connection goes on, errors naming the file at check, start and reload, handshake figures,
X-Forwarded-Proto and the access log."""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import socket
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from tidegate.testing.backends import Backend
from tidegate.testing.certs import make_pair, serial_of
from tidegate.testing.process import Proc, run_tidegate
from tidegate.testing.wait import until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def certs(tmp_path: Path) -> dict[str, Any]:
    a_cert, a_key, a_serial = make_pair(tmp_path, "a", ["a.test"])
    w_cert, w_key, w_serial = make_pair(tmp_path, "wild", ["*.wild.test"])
    return {"a": (a_cert, a_key, a_serial), "wild": (w_cert, w_key, w_serial), "dir": tmp_path}


def config(backend: Backend, pairs: list[tuple[Path, Path]], extra: str = "") -> str:
    certificates = ", ".join(f'{{ cert = "{c}", key = "{k}" }}' for c, k in pairs)
    return f"""
[admin]
listen = "127.0.0.1:0"

[[pools]]
name = "web"
instances = [{{ address = "{backend.address}" }}]

[[http]]
listen = "127.0.0.1:0"
pool = "web"
{extra}
[http.tls]
certificates = [{certificates}]
"""


def client_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # self-signed; the test reads which certificate came
    return ctx


def tls_connect(addr: tuple[str, int], server_name: str | None) -> ssl.SSLSocket:
    raw = socket.create_connection(addr, timeout=10)
    return client_context().wrap_socket(raw, server_hostname=server_name)


def served_serial(addr: tuple[str, int], server_name: str | None) -> int:
    with tls_connect(addr, server_name) as s:
        der = s.getpeercert(binary_form=True)
        assert der is not None
        return serial_of(der)


def https_get(addr: tuple[str, int], path: str, name: str = "a.test") -> tuple[int, bytes]:
    conn = http.client.HTTPSConnection(addr[0], addr[1], timeout=10, context=client_context())
    try:
        conn.request("GET", path, headers={"Host": name})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def admin_json(proc: Proc, path: str = "/api/pools") -> Any:
    conn = http.client.HTTPConnection(*proc.address("admin"), timeout=10)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def test_sni_picks_the_certificate_that_names_the_host(start_tidegate: Callable[..., Proc], certs) -> None:
    with Backend("b") as b:
        a_cert, a_key, a_serial = certs["a"]
        w_cert, w_key, w_serial = certs["wild"]
        gw = start_tidegate(config(b, [(a_cert, a_key), (w_cert, w_key)]))
        addr = gw.address("http")
        assert served_serial(addr, "a.test") == a_serial
        assert served_serial(addr, "x.wild.test") == w_serial
        assert served_serial(addr, "X.WILD.TEST") == w_serial
        assert served_serial(addr, "deep.x.wild.test") == a_serial  # one label only: the first
        assert served_serial(addr, "elsewhere.test") == a_serial
        assert served_serial(addr, None) == a_serial  # no SNI: the first
        status, body = https_get(addr, "/")
        assert (status, body) == (200, b"b")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_sees_the_right_certificate(start_tidegate: Callable[..., Proc], certs) -> None:
    with Backend("b") as b:
        a_cert, a_key, _ = certs["a"]
        w_cert, w_key, _ = certs["wild"]
        gw = start_tidegate(config(b, [(a_cert, a_key), (w_cert, w_key)]))
        host, port = gw.address("http")
        for name, cafile in (("a.test", a_cert), ("shop.wild.test", w_cert)):
            out = subprocess.run(
                [
                    "curl",
                    "-sS",
                    "--cacert",
                    str(cafile),
                    "--resolve",
                    f"{name}:{port}:{host}",
                    f"https://{name}:{port}/headers",
                ],
                capture_output=True,
                text=True,
                timeout=20,
            )
            # curl verified the chain and the name against that one certificate: the right one came.
            assert out.returncode == 0, out.stderr
            headers = dict(json.loads(out.stdout)["headers"])
            assert headers["x-forwarded-proto"] == "https"
            assert headers["host"] == f"{name}:{port}"


def test_a_reload_swaps_the_certificate_and_kept_alive_connections_go_on(
    start_tidegate: Callable[..., Proc], certs
) -> None:
    with Backend("b") as b:
        a_cert, a_key, a_serial = certs["a"]
        gw = start_tidegate(config(b, [(a_cert, a_key)]))
        addr = gw.address("http")
        kept = http.client.HTTPSConnection(addr[0], addr[1], timeout=10, context=client_context())
        kept.request("GET", "/")
        assert kept.getresponse().read() == b"b"
        kept_serial = serial_of(kept.sock.getpeercert(binary_form=True))  # type: ignore[union-attr]
        assert kept_serial == a_serial
        # The files change on disk (a renewal), then SIGHUP.
        _, _, new_serial = make_pair(certs["dir"], "a", ["a.test"])
        mark = len(gw.lines)
        gw.popen.send_signal(signal.SIGHUP)
        gw.wait_for_new(r"reload", mark)
        assert served_serial(addr, "a.test") == new_serial
        # The connection opened before goes on, on its own session.
        kept.request("GET", "/")
        assert kept.getresponse().read() == b"b"
        assert kept.sock is not None
        kept.close()


def test_a_reload_with_a_bad_certificate_is_refused_and_the_old_one_stays(
    start_tidegate: Callable[..., Proc], certs
) -> None:
    with Backend("b") as b:
        a_cert, a_key, a_serial = certs["a"]
        good_cert, good_key = a_cert.read_bytes(), a_key.read_bytes()
        gw = start_tidegate(config(b, [(a_cert, a_key)]))
        addr = gw.address("http")
        _, other_key, _ = make_pair(certs["dir"], "other", ["other.test"])

        def key_of_another() -> None:
            a_key.write_bytes(other_key.read_bytes())

        def gone() -> None:
            a_key.unlink()

        def expired() -> None:
            # An expired certificate for the same key: only its dates are wrong.
            make_pair(certs["dir"], "a", ["a.test"], days=-1, start_days=-10, key=_key_of(a_key))

        for spoil, words in (
            (key_of_another, rf"key: {a_key} does not match the certificate {a_cert}"),
            (gone, rf"key: cannot read {a_key}"),
            (expired, rf"cert: {a_cert}: expired on"),
        ):
            spoil()
            mark = len(gw.lines)
            gw.popen.send_signal(signal.SIGHUP)
            gw.wait_for_new(r"reload refused", mark)
            gw.wait_for_new(rf"http\[0\]\.tls\.certificates\[0\]\.{words}", mark)
            assert served_serial(addr, "a.test") == a_serial
            assert https_get(addr, "/") == (200, b"b")
            a_cert.write_bytes(good_cert)
            a_key.write_bytes(good_key)


def _key_of(path: Path) -> Any:
    return serialization.load_pem_private_key(path.read_bytes(), None)


def test_a_reload_reaches_every_worker(start_tidegate: Callable[..., Proc], certs) -> None:
    with Backend("b") as b:
        a_cert, a_key, a_serial = certs["a"]
        gw = start_tidegate(config(b, [(a_cert, a_key)], extra="workers = 2"))
        addr = gw.address("http")
        _, _, new_serial = make_pair(certs["dir"], "a", ["a.test"])
        mark = len(gw.lines)
        gw.popen.send_signal(signal.SIGHUP)
        gw.wait_for_new(r"reloaded", mark)
        from tidegate.testing.wait import until

        # The main process says "reloaded" once it has sent the section to the workers; each
        # worker reads the files when the message arrives. The kernel spreads new connections
        # over both workers' sockets, so twenty in a row reach both (2^-19 that they do not).
        until(lambda: served_serial(addr, "a.test") == new_serial, timeout=20)
        serials = {served_serial(addr, "a.test") for _ in range(20)}
        assert serials == {new_serial}, (serials, a_serial)


def test_check_and_start_name_the_file(tmp_path: Path, certs) -> None:
    with Backend("b") as b:
        a_cert, a_key, _ = certs["a"]
        expired_cert, expired_key, _ = make_pair(tmp_path, "old", ["old.test"], days=-1, start_days=-10)
        _, other_key, _ = make_pair(tmp_path, "other", ["other.test"])
        locked_key = tmp_path / "locked.key"
        locked_key.write_bytes(
            serialization.load_pem_private_key(a_key.read_bytes(), None).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"secret"),
            )
        )
        cases = [
            ([(a_cert, locked_key)], f"{locked_key}: the key is encrypted", "key"),
            ([(a_cert, other_key)], f"{other_key} does not match the certificate {a_cert}", "key"),
            ([(a_cert, tmp_path / "missing.key")], f"cannot read {tmp_path / 'missing.key'}", "key"),
            ([(tmp_path / "missing.pem", a_key)], f"cannot read {tmp_path / 'missing.pem'}", "cert"),
            ([(a_cert, a_key), (expired_cert, expired_key)], f"{expired_cert}: expired on", "cert"),
        ]
        for i, (pairs, words, field) in enumerate(cases):
            path = tmp_path / f"bad{i}.toml"
            path.write_text(config(b, pairs))
            j = len(pairs) - 1
            for command in ("check", "run"):
                out = run_tidegate(command, str(path), timeout=30)
                assert out.returncode == 2, (command, out.stdout, out.stderr)
                assert f"http[0].tls.certificates[{j}].{field}: {words}" in out.stderr, out.stderr
                assert f"{path}:" in out.stderr


def test_handshakes_are_counted_and_the_instance_is_told_https(
    start_tidegate: Callable[..., Proc], certs, tmp_path: Path
) -> None:
    with Backend("b") as b:
        a_cert, a_key, _ = certs["a"]
        log = tmp_path / "access.log"
        gw = start_tidegate(config(b, [(a_cert, a_key)], extra=f'access_log = "{log}"'))
        addr = gw.address("http")
        status, body = https_get(addr, "/headers")
        assert status == 200
        headers = dict(json.loads(body)["headers"])
        assert headers["x-forwarded-proto"] == "https"
        # Plain HTTP to the TLS port: a failed handshake, and the listener goes on serving.
        with socket.create_connection(addr, timeout=10) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
            s.settimeout(10)
            while s.recv(4096):
                pass
        assert https_get(addr, "/") == (200, b"b")
        facts = next(p for p in admin_json(gw)["pools"] if p["name"] == "web")["http"]["tls"]
        assert facts == {"handshakes": 2, "handshake_failures": 1}
        conn = http.client.HTTPConnection(*gw.address("admin"), timeout=10)
        conn.request("GET", "/metrics")
        metrics = conn.getresponse().read().decode()
        conn.close()
        assert 'tidegate_http_tls_handshakes_total{listener="http"} 2.0' in metrics
        assert 'tidegate_http_tls_handshake_failures_total{listener="http"} 1.0' in metrics
        # The log is written on a short timer, not per request: wait for both lines.
        until(lambda: len(log.read_text().splitlines()) >= 2, timeout=10)
        entries = [json.loads(line) for line in log.read_text().splitlines()]
        assert entries and all(e["tls"] in ("TLSv1.2", "TLSv1.3") and e["cipher"] for e in entries)


def test_a_plain_listener_stays_plain(start_tidegate: Callable[..., Proc]) -> None:
    with Backend("b") as b:
        gw = start_tidegate(
            f'[[pools]]\nname = "web"\ninstances = [{{ address = "{b.address}" }}]\n'
            '[[http]]\nlisten = "127.0.0.1:0"\npool = "web"\n'
        )
        conn = http.client.HTTPConnection(*gw.address("http"), timeout=10)
        conn.request("GET", "/headers")
        headers = dict(json.loads(conn.getresponse().read())["headers"])
        assert headers["x-forwarded-proto"] == "http"
        conn.close()


def test_tls_with_workers_sums_the_handshakes(start_tidegate: Callable[..., Proc], certs) -> None:
    from tidegate.testing.wait import until

    with Backend("b") as b:
        a_cert, a_key, a_serial = certs["a"]
        gw = start_tidegate(config(b, [(a_cert, a_key)], extra="workers = 2"))
        addr = gw.address("http")
        for _ in range(6):
            assert https_get(addr, "/") == (200, b"b")
        assert served_serial(addr, "a.test") == a_serial

        def facts() -> Any:
            return next(p for p in admin_json(gw)["pools"] if p["name"] == "web")["http"].get("tls")

        got = until(lambda: (f := facts()) and f["handshakes"] >= 7 and f, timeout=10)
        assert got == {"handshakes": 7, "handshake_failures": 0}, (got, gw.output())


def test_versions_and_alpn(start_tidegate: Callable[..., Proc], certs) -> None:
    with Backend("b") as b:
        a_cert, a_key, _ = certs["a"]
        gw = start_tidegate(config(b, [(a_cert, a_key)]))
        addr = gw.address("http")
        ctx = client_context()
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        with ctx.wrap_socket(socket.create_connection(addr, timeout=10), server_hostname="a.test") as s:
            assert s.selected_alpn_protocol() == "h2"  # served by http/h2/ (tests/http/h2/)
        ctx.set_alpn_protocols(["http/1.1"])
        with ctx.wrap_socket(socket.create_connection(addr, timeout=10), server_hostname="a.test") as s:
            assert s.version() == "TLSv1.2"
            assert s.selected_alpn_protocol() == "http/1.1"
            s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := s.recv(4096):
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\nb")

        strict = start_tidegate(
            config(b, [(a_cert, a_key)]).replace("[http.tls]", '[http.tls]\nmin_version = "1.3"')
        )
        strict_addr = strict.address("http")
        with pytest.raises(ssl.SSLError):
            ctx.wrap_socket(socket.create_connection(strict_addr, timeout=10), server_hostname="a.test")
        with tls_connect(strict_addr, "a.test") as s:
            assert s.version() == "TLSv1.3"
        from tidegate.testing.wait import until

        def facts() -> Any:
            return next(p for p in admin_json(strict)["pools"] if p["name"] == "web")["http"]["tls"]

        assert until(lambda: facts() == {"handshakes": 1, "handshake_failures": 1}, timeout=10), facts()
