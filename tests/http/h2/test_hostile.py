"""Hostile HTTP/2 clients get bounded work and a GOAWAY; every other connection is served.

Each test attacks over a real socket (frames from the h2 library, or raw ones from hyperframe),
checks the GOAWAY and its code, that the attack's work stayed bounded, and that a normal client
on another connection was served while the attacking connection was still open.
"""

from __future__ import annotations

import contextlib
from typing import Any

from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hpack import Encoder
from hyperframe.frame import ContinuationFrame, DataFrame, HeadersFrame, PingFrame, SettingsFrame

from tidegate.http.h2.stream import PENDING_HIGH
from tidegate.testing.gateway import gateway_config as config
from tidegate.testing.h2client import H2Client
from tidegate.testing.wait import until

H2 = {"http2": True}


def served(gw: Any) -> None:
    with H2Client(gw.host, gw.port) as c:
        a = c.request("GET", "/")
        assert a.status == 200, a


def request_block(extra: list[tuple[str, str]] | None = None, authority: str = "t") -> bytes:
    fields = [(":method", "GET"), (":scheme", "http"), (":authority", authority), (":path", "/"), *(extra or [])]
    return Encoder().encode(fields, huffman=False)


def sendall_quietly(c: H2Client, data: bytes) -> None:
    """The gateway may close in the middle of a flood: that is the point."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        c.send_raw(data)


def test_rapid_reset_is_cut_off_after_its_budget(faults, gateway) -> None:
    slow = faults("slow", delay=None, name="slow")  # every request stays in flight until reset
    (ok,) = [faults("echo", name="ok")]
    cfg = config(
        [ok.address],
        http={**H2, "routes": [{"path_prefix": "/slow", "pool": "slow"}]},
        pools=[{"name": "slow", "instances": [{"address": slow.address}]}],
    )
    gw = gateway(cfg)
    with H2Client(gw.host, gw.port, timeout=15) as c:
        burst = bytearray()
        for _ in range(1000):
            sid = c.conn.get_next_available_stream_id()
            c.conn.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"t"),
                                      (b":path", b"/slow")])
            c.conn.reset_stream(sid, ErrorCodes.CANCEL)
            burst += c.conn.data_to_send()
        sendall_quietly(c, bytes(burst))
        served(gw)
        goaway = c.wait_goaway()
        assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
        c.wait_closed()
    # bounded work: the instance saw at most the budget's worth of the thousand streams
    assert len(slow.seen) <= 130, len(slow.seen)
    served(gw)
    until(lambda: all(ct.active == 0 for ct in gw.counters("slow").values()), timeout=10)


def test_continuation_flood_is_refused_by_its_bytes(backends, gateway) -> None:
    (b,) = backends("a")
    gw = gateway(config([b.address], http=H2, limits={"max_header_bytes": "8KiB"}))
    block = request_block([(f"x-{i}", "v" * 900) for i in range(60)])  # ~55 KB, 55 frames < h2's 64
    pieces = [block[i : i + 1000] for i in range(0, len(block), 1000)]
    with H2Client(gw.host, gw.port, timeout=10) as c:
        first = HeadersFrame(1, pieces[0])
        first.flags.add("END_STREAM")
        frames = [first.serialize()]
        for piece in pieces[1:-1]:
            frames.append(ContinuationFrame(1, piece).serialize())
        sendall_quietly(c, b"".join(frames))  # never the END_HEADERS
        served(gw)
        goaway = c.wait_goaway()
        assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
        c.wait_closed()
    served(gw)


def test_hpack_bomb_is_bounded_by_the_header_limit(backends, gateway) -> None:
    (b,) = backends("a")
    gw = gateway(config([b.address], http=H2, limits={"max_header_bytes": "8KiB"}))
    enc = Encoder()
    # One 4000-byte field enters the dynamic table; each repeat is a 1-byte index into it: a
    # 4 KB block decodes to 48 KB, under h2's default 64 KiB list size, over the 8 KiB limit.
    block = enc.encode([(":method", "GET"), (":scheme", "http"), (":authority", "t"), (":path", "/"),
                        ("x-bomb", "b" * 4000)], huffman=False)
    block += enc.encode([("x-bomb", "b" * 4000)] * 11, huffman=False)
    assert len(block) < 4200
    with H2Client(gw.host, gw.port, timeout=10) as c:
        f = HeadersFrame(1, block)
        f.flags.add("END_HEADERS")
        f.flags.add("END_STREAM")
        sendall_quietly(c, f.serialize())
        goaway = c.wait_goaway()
        assert goaway.error_code in (ErrorCodes.ENHANCE_YOUR_CALM, ErrorCodes.COMPRESSION_ERROR,
                                     ErrorCodes.PROTOCOL_ERROR)
        c.wait_closed()
    served(gw)


def test_settings_and_ping_floods_get_goaway(backends, gateway) -> None:
    (b,) = backends("a")
    gw = gateway(config([b.address], http=H2))
    for frame in (SettingsFrame(0), PingFrame(0, opaque_data=b"12345678")):
        with H2Client(gw.host, gw.port, timeout=10) as c:
            sendall_quietly(c, frame.serialize() * 2000)  # and reads none of the ACKs meanwhile
            served(gw)
            goaway = c.wait_goaway()
            assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
            c.wait_closed()
    served(gw)


def test_empty_data_frames_flood_gets_goaway(backends, gateway) -> None:
    (b,) = backends("a")
    gw = gateway(config([b.address], http=H2))
    with H2Client(gw.host, gw.port, timeout=10) as c:
        sid = c.start("POST", "/echo", end=False)
        sendall_quietly(c, DataFrame(sid, b"").serialize() * 2000)
        served(gw)
        assert c.wait_goaway().error_code == ErrorCodes.ENHANCE_YOUR_CALM
        c.wait_closed()


def test_zero_window_stall_is_closed_with_the_instance_read_paused(backends, gateway) -> None:
    (b,) = backends("a")
    gw = gateway(config([b.address], http=H2, limits={"idle_timeout": "2s"}))
    with H2Client(gw.host, gw.port, timeout=15, settings={SettingCodes.INITIAL_WINDOW_SIZE: 0}) as c:
        c.start("GET", "/bytes/4000000")

        def streams() -> list[Any]:
            assert gw.service is not None
            return [s for conn in gw.service.conns for s in getattr(conn, "streams", {}).values()]

        def paused() -> bool:
            got: list[Any] = gw.call(streams)
            return bool(got) and got[0].write_paused

        until(paused, timeout=10)
        # memory stays bounded: what waits is the high-water mark plus about one socket read
        held = gw.call(lambda: sum(s.pending_bytes for s in streams()))
        assert 0 < held <= PENDING_HIGH + 512 * 1024, held
        served(gw)
        assert c.wait_goaway().error_code == ErrorCodes.ENHANCE_YOUR_CALM
        c.wait_closed()
    served(gw)


def test_stream_id_abuse_is_a_protocol_error(backends, gateway) -> None:
    (b,) = backends("a")
    gw = gateway(config([b.address], http=H2))
    block = request_block()
    for ids in ((2,), (5, 3)):  # an even (server-side) id; an id lower than one already used
        with H2Client(gw.host, gw.port, timeout=10) as c:
            frames = b""
            for sid in ids:
                f = HeadersFrame(sid, block)
                f.flags.add("END_HEADERS")
                f.flags.add("END_STREAM")
                frames += f.serialize()
            sendall_quietly(c, frames)
            served(gw)
            assert c.wait_goaway().error_code == ErrorCodes.PROTOCOL_ERROR
            c.wait_closed()
    served(gw)


def test_a_frame_over_the_negotiated_size_is_refused_at_its_header(backends, gateway) -> None:
    (b,) = backends("a")
    gw = gateway(config([b.address], http=H2))
    with H2Client(gw.host, gw.port, timeout=10) as c:
        sid = c.start("POST", "/echo", end=False)
        big = DataFrame(sid, b"d" * 1_000_000).serialize()  # announces 1 MB, max is 16 KiB
        sendall_quietly(c, big[:20_000])  # the rest never comes: the header alone must do
        served(gw)
        assert c.wait_goaway().error_code == ErrorCodes.FRAME_SIZE_ERROR
        c.wait_closed()
    served(gw)
