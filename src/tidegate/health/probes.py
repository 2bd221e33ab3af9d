"""Active probes: the only I/O of the health layer. Each returns (ok, detail) and never raises.

http: `GET path` with `Connection: close`, healthy when the status equals `expect_status`
(HAProxy's `http-check expect status`); the response is parsed by httptools, and only up to its
headers. tcp: healthy when a connection is accepted. Both are bounded by `timeout` in total.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import NamedTuple

import httptools


class ProbeResult(NamedTuple):
    ok: bool
    detail: str


class _StatusOnly:
    """httptools callbacks: remember that the headers are complete."""

    def __init__(self) -> None:
        self.done = False

    def on_headers_complete(self) -> None:
        self.done = True


async def probe_tcp(host: str, port: int, timeout: float) -> ProbeResult:
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return ProbeResult(False, f"tcp connect timeout after {timeout:g}s")
    except OSError as exc:
        return ProbeResult(False, f"tcp connect: {_why(exc)}")
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return ProbeResult(True, "tcp connect ok")


async def probe_http(host: str, port: int, path: str, expect_status: int, timeout: float) -> ProbeResult:
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            host_header = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: tidegate-health\r\n"
                "Connection: close\r\n\r\n".encode("latin-1")
            )
            cb = _StatusOnly()
            parser = httptools.HttpResponseParser(cb)
            while not cb.done:
                data = await reader.read(4096)
                if not data:
                    return ProbeResult(False, "http: connection closed before a response")
                try:
                    parser.feed_data(data)
                except httptools.HttpParserError:
                    # What follows the headers (a body a 204 should not have, say) is not ours
                    # to judge: the status line and headers parsed.
                    if not cb.done:
                        raise
            status = parser.get_status_code()
    except TimeoutError:
        return ProbeResult(False, f"http timeout after {timeout:g}s")
    except OSError as exc:
        return ProbeResult(False, f"http: {_why(exc)}")
    except httptools.HttpParserError as exc:
        return ProbeResult(False, f"http: bad response ({exc})")
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    if status != expect_status:
        return ProbeResult(False, f"http status {status}, expected {expect_status}")
    return ProbeResult(True, f"http status {status}")


def _why(exc: OSError) -> str:
    # asyncio's connect error carries errno but a message naming the address; say what happened.
    return os.strerror(exc.errno) if exc.errno else str(exc)
