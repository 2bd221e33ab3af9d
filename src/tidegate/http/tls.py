"""TLS termination on an [[http]] listener: its certificates, SNI, reload, and the handshake.

Theory of operation. The stdlib `ssl` module (OpenSSL) does the cryptography, and uvloop's
`create_server(ssl=…)` runs every handshake and record in C. Each configured certificate gets an
SSLContext of its own; the listener's *front* context, made once, starts every handshake, and its
SNI callback (which OpenSSL calls for every client hello, with or without a server name) hands the
connection the context of the certificate that names the client's server name (sni.py decides
which). A reload reads the files again and swaps the set the callback reads: connections opened
before keep the session they have, new handshakes get the new certificates, and the listening
socket is never touched. The front context stays, so are its session ticket keys.

uvloop makes the connection's protocol at accept time and calls its connection_made once the
handshake is done; `Handshake` is that protocol. It counts the handshake, then hands the
connection to the protocol of the ALPN name negotiated (alpn.py). A handshake that fails (a bad
client hello, no shared version or cipher, a reset, `handshake_timeout`) never reaches
connection_made, and uvloop lets go of the protocol when it closes the connection: the
`Handshake` dies unmade, and that is counted as a failure.

Every file is checked where a mistake can be reported with its file, line and key — `tidegate
check`, start-up and reload (a reload with a bad certificate is refused whole, and the old
certificates stay): unreadable files, a key that does not match its certificate or that is
encrypted, an expired or not yet valid certificate.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from tidegate.config.locate import Path
from tidegate.config.model import CertificateConfig, Config, HttpTlsConfig
from tidegate.http import alpn, sni

log = logging.getLogger("tidegate.http")

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


def _configure(ctx: ssl.SSLContext, tls: HttpTlsConfig) -> None:
    # On every context, the front one and each certificate's: OpenSSL reads the version bounds
    # from the first and, once SNI switched, the ALPN choice from the second.
    ctx.minimum_version = _VERSIONS[tls.min_version]
    offered = alpn.offered(list(tls.alpn))
    if offered:
        ctx.set_alpn_protocols(offered)


def _context(tls: HttpTlsConfig) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    _configure(ctx, tls)
    return ctx


def _read(path: str, field: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise CertificateError(field, f"cannot read {path}: {exc.strerror}") from None


def _no_password() -> NoReturn:
    # Without a callback OpenSSL would ask on the terminal, and a start or reload would hang.
    raise CertificateError("key", "encrypted")


def _public(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_certificate(
    pair: CertificateConfig, tls: HttpTlsConfig, now: datetime.datetime | None = None
) -> Certificate:
    """One configured pair, read and checked; CertificateError names what is wrong and with which file."""
    pem = _read(pair.cert, "cert")
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise CertificateError("cert", f"{pair.cert}: not a PEM certificate") from None
    key_pem = _read(pair.key, "key")
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:  # cryptography's word for "this one needs a password"
        raise CertificateError(
            "key", f"{pair.key}: the key is encrypted; give it unencrypted (readable by tidegate only)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise CertificateError("key", f"{pair.key}: not a PEM private key") from None
    if _public(key.public_key()) != _public(cert.public_key()):
        raise CertificateError("key", f"{pair.key} does not match the certificate {pair.cert}")
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
        ctx.load_cert_chain(pair.cert, pair.key, password=_no_password)
    except ssl.SSLError as exc:  # e.g. a chain OpenSSL refuses (cryptography read the leaf only)
        raise CertificateError(
            "cert", f"{pair.cert}: OpenSSL refuses it with {pair.key} ({exc.reason})"
        ) from None
    except OSError as exc:  # the files changed between the two reads
        raise CertificateError("cert", f"cannot read {pair.cert} or {pair.key}: {exc.strerror}") from None
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
    """The certificates of one listener as loaded at one time."""

    def __init__(self, tls: HttpTlsConfig) -> None:
        self.certificates = [load_certificate(pair, tls) for pair in tls.certificates]
        self.contexts = [c.context for c in self.certificates]
        self.index = sni.NameIndex([c.names for c in self.certificates])

    def context_for(self, server_name: str | None) -> ssl.SSLContext:
        return self.contexts[self.index.pick(server_name)]


class ListenerTls:
    """One listener's TLS: the front context, the current certificates, the handshake figures."""

    def __init__(self, tls: HttpTlsConfig) -> None:
        self.cfg = tls
        self.set = CertificateSet(tls)
        # No certificate of its own: the SNI callback always hands over one of the set's.
        self.front = _context(tls)
        self.front.sni_callback = self._sni
        self.handshakes = 0
        self.failed = 0

    def _sni(self, obj: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext) -> None:
        obj.context = self.set.context_for(server_name)

    def reload(self, tls: HttpTlsConfig) -> None:
        """Read the files again (the reload checked them already); a failure keeps the old set."""
        try:
            new = CertificateSet(tls)
        except CertificateError as exc:
            log.error("tls: certificates not reloaded, the old ones stay: %s", exc.message)
            return
        self.set = new
        _configure(self.front, tls)  # for handshakes from now on; SSL objects made copy it
        if tls.handshake_timeout != self.cfg.handshake_timeout:
            log.warning(
                "tls: a new handshake_timeout needs a restart; keeping %gs", self.cfg.handshake_timeout
            )
        self.cfg = tls.model_copy(update={"handshake_timeout": self.cfg.handshake_timeout})


class Handshake:
    """A TLS connection's protocol until its handshake is done (see the module's docstring)."""

    __slots__ = ("made", "make", "tls")

    def __init__(self, tls: ListenerTls, make: Callable[[str | None], asyncio.Protocol]) -> None:
        self.tls = tls
        self.make = make
        self.made = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made = True
        self.tls.handshakes += 1
        obj = transport.get_extra_info("ssl_object")
        proto = self.make(obj.selected_alpn_protocol() if obj is not None else None)
        transport.set_protocol(proto)
        proto.connection_made(transport)

    def __del__(self) -> None:
        if not self.made:
            self.tls.failed += 1
