"""TLS termination on an [[http]] listener: its certificates, SNI, reload, and the handshake.

Theory of operation. The stdlib `ssl` module (OpenSSL) does the cryptography. Each configured
certificate gets an SSLContext of its own; one *front* context starts every handshake, and its
SNI callback hands the connection the context of the certificate that names the client's server
name (sni.py decides which). A reload reads the files again and swaps the whole set at once:
connections opened before keep the session they have, new handshakes get the new certificates,
and the listening socket is never touched.

A listener accepts plain TCP and runs the handshake itself (`loop.start_tls`, bounded by
`handshake_timeout`), so it counts handshakes and failed ones exactly, and only a connection whose
handshake succeeded reaches the HTTP protocol (chosen by the ALPN protocol negotiated).

Every file is checked where a mistake can be reported with its file, line and key — `tidegate
check`, start-up and reload (a reload with a bad certificate is refused whole, and the old
certificates stay): unreadable files, a key that does not match its certificate, an expired or
not yet valid certificate.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

from tidegate.config.locate import Path
from tidegate.config.model import CertificateConfig, Config, HttpTlsConfig
from tidegate.http import sni

log = logging.getLogger("tidegate.http")

# What a listener can speak after the handshake. "h2" joins when an HTTP/2 protocol exists; until
# then it is not offered, whatever the config lists, so no client negotiates what is not served.
SERVED_ALPN: tuple[str, ...] = ("http/1.1",)

_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


class CertificateError(Exception):
    """A certificate pair that cannot be served; `field` is "cert" or "key"."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Certificate:
    cert: str
    key: str
    names: tuple[str, ...]  # DNS names of its subjectAltName (else its common name)
    not_after: datetime.datetime
    context: ssl.SSLContext


def _names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(san.get_values_for_type(x509.DNSName))
        if names:
            return names
    except x509.ExtensionNotFound:
        pass
    return tuple(str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME))


def _context(tls: HttpTlsConfig) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _VERSIONS[tls.min_version]
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    offered = [p for p in tls.alpn if p in SERVED_ALPN]
    if offered:
        ctx.set_alpn_protocols(offered)
    return ctx


def load_certificate(
    pair: CertificateConfig, tls: HttpTlsConfig, now: datetime.datetime | None = None
) -> Certificate:
    """One configured pair, read and checked; CertificateError names what is wrong and with which file."""
    try:
        with open(pair.cert, "rb") as f:
            pem = f.read()
    except OSError as exc:
        raise CertificateError("cert", f"cannot read {pair.cert}: {exc.strerror}") from None
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise CertificateError("cert", f"{pair.cert}: not a PEM certificate") from None
    try:
        with open(pair.key, "rb"):
            pass
    except OSError as exc:
        raise CertificateError("key", f"cannot read {pair.key}: {exc.strerror}") from None
    when = now or datetime.datetime.now(datetime.UTC)
    if cert.not_valid_after_utc <= when:
        raise CertificateError(
            "cert", f"{pair.cert}: expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        )
    if cert.not_valid_before_utc > when:
        raise CertificateError(
            "cert", f"{pair.cert}: not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        )
    ctx = _context(tls)
    try:
        ctx.load_cert_chain(pair.cert, pair.key)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
            raise CertificateError("key", f"{pair.key} does not match the certificate {pair.cert}") from None
        raise CertificateError(
            "key", f"{pair.key}: not a usable private key for {pair.cert} ({exc.reason})"
        ) from None
    return Certificate(pair.cert, pair.key, _names(cert), cert.not_valid_after_utc, ctx)


def check_files(config: Config) -> list[tuple[Path, str]]:
    """The certificate files every TLS listener names, checked (config.load_config's FileCheck)."""
    problems: list[tuple[Path, str]] = []
    for i, http in enumerate(config.http):
        if http.tls is None:
            continue
        for j, pair in enumerate(http.tls.certificates):
            try:
                load_certificate(pair, http.tls)
            except CertificateError as exc:
                problems.append((("http", i, "tls", "certificates", j, exc.field), exc.message))
    return problems


class CertificateSet:
    """The certificates of one listener as loaded at one time, and the front context that starts
    each handshake and picks among them by SNI."""

    def __init__(self, tls: HttpTlsConfig) -> None:
        self.certificates = [load_certificate(pair, tls) for pair in tls.certificates]
        self.names = [c.names for c in self.certificates]
        front = self.front = _context(tls)
        first = self.certificates[0]
        front.load_cert_chain(first.cert, first.key)  # a client without SNI is answered by it
        front.sni_callback = self._sni

    def _sni(self, obj: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext) -> None:
        obj.context = self.certificates[sni.pick(self.names, server_name)].context


class ListenerTls:
    """One listener's TLS: its current certificates and its handshake figures."""

    def __init__(self, tls: HttpTlsConfig) -> None:
        self.cfg = tls
        self.set = CertificateSet(tls)
        self.handshakes = 0
        self.failed = 0

    def reload(self, tls: HttpTlsConfig) -> None:
        """Read the files again (the reload checked them already); a failure keeps the old set."""
        try:
            new = CertificateSet(tls)
        except CertificateError as exc:
            log.error("tls: certificates not reloaded, the old ones stay: %s", exc.message)
            return
        self.set = new
        self.cfg = tls


class AlpnSwitch(asyncio.Protocol):
    """A TLS connection's protocol at its handshake's end: it hands the connection to the HTTP
    protocol for the negotiated ALPN protocol (no byte can arrive before)."""

    def __init__(self, make: Callable[[str | None], asyncio.Protocol]) -> None:
        self.make = make

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        obj = transport.get_extra_info("ssl_object")
        proto = self.make(obj.selected_alpn_protocol() if obj is not None else None)
        transport.set_protocol(proto)
        proto.connection_made(transport)


class TlsListener:
    """A listening socket whose connections are TLS: it accepts them itself and runs each handshake
    as its own awaitable (`loop.connect_accepted_socket`), so a handshake that fails or times out
    is counted as such and never reaches the HTTP protocol. Stands in for the asyncio.Server a
    plain listener has (`sockets`, `close`)."""

    BATCH = 64  # connections accepted per wake-up at most, so one busy listener cannot starve the loop

    def __init__(
        self, sock: socket.socket, tls: ListenerTls, make: Callable[[str | None], asyncio.Protocol]
    ) -> None:
        self.sock = sock
        self.sockets = [sock]
        self.tls = tls
        self.make = make
        self.loop = asyncio.get_running_loop()
        self.handshaking: set[asyncio.Task[None]] = set()
        self.open = True
        sock.setblocking(False)
        self.loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(self.BATCH):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE, ENFILE, ECONNABORTED: the next wake-up tries again
                log.warning("tls: accept failed: %s", exc)
                return
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = self.loop.create_task(self._handshake(conn))
            self.handshaking.add(task)
            task.add_done_callback(self.handshaking.discard)

    async def _handshake(self, conn: socket.socket) -> None:
        tls = self.tls
        try:
            await self.loop.connect_accepted_socket(
                lambda: AlpnSwitch(self.make),
                conn,
                ssl=tls.set.front,
                ssl_handshake_timeout=tls.cfg.handshake_timeout,
            )
        except (OSError, TimeoutError, ConnectionError, ValueError) as exc:
            tls.failed += 1
            log.debug("tls: handshake failed: %r", exc)
            conn.close()
            return
        tls.handshakes += 1

    def close(self) -> None:
        if self.open:
            self.open = False
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
        for task in list(self.handshaking):
            task.cancel()
