"""The fast lane's judge against llhttp's own callback parse, over generated heads.

The oracle parses each buffer the long way (httptools with every callback, as the gateway's
callback path does) and says from the parsed facts whether the buffer is plain. The lane, which
scans bytes, must agree exactly: take what the oracle calls plain with the same facts, and leave
everything else — including every malformed head — to the callback path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httptools
from hypothesis import given, settings
from hypothesis import strategies as st

from tidegate.http.host import valid_host
from tidegate.http.plain import RequestLane, ResponseLane
from tidegate.http.request_id import sane

REQUEST_SPECIAL = {
    b"content-length",
    b"transfer-encoding",
    b"connection",
    b"expect",
    b"upgrade",
    b"via",
    b"keep-alive",
    b"te",
    b"trailer",
}
RESPONSE_SPECIAL = {b"transfer-encoding", b"keep-alive", b"te", b"trailer", b"upgrade", b"tidegate-draining"}
RETRIED = frozenset({502, 504})

MAX_FIELDS = 4  # small, so generated heads cross it
RID = b"x-request-id"


@dataclass
class Parsed:
    ok: bool = True
    upgrade: bool = False
    complete: bool = False
    url: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    method: bytes = b""
    version: str = ""
    status: int = 0


def oracle(data: bytes, response: bool) -> Parsed:
    p = Parsed()

    class Cb:
        def on_url(self, url: bytes) -> None:
            p.url += url

        def on_header(self, name: bytes, value: bytes) -> None:
            p.headers.append((name, value))

        def on_body(self, body: bytes) -> None:
            p.body += body

        def on_message_complete(self) -> None:
            p.complete = True

    parser = httptools.HttpResponseParser(Cb()) if response else httptools.HttpRequestParser(Cb())
    try:
        parser.feed_data(data)
    except httptools.HttpParserUpgrade:
        p.upgrade = True
    except httptools.HttpParserError:
        p.ok = False
        return p
    if response:
        p.status = parser.get_status_code() if p.complete else 0
    else:
        p.method = parser.get_method()
    p.version = parser.get_http_version()
    return p


# --- requests -------------------------------------------------------------------------------
names = st.sampled_from(
    [
        b"Host", b"host", b"HOST", b"User-Agent", b"Accept", b"Cookie", b"X-Request-Id",
        b"Content-Length", b"Transfer-Encoding", b"Connection", b"connection", b"Expect",
        b"Upgrade", b"Via", b"Keep-Alive", b"TE", b"Trailer", b"X-Forwarded-For",
        b"x-forwarded-port", b"Proxy-Authorization", b"Proxy-Foo", b"Test", b"Tea", b"Hostname",
        b"Content-Lengthy",
    ]
)  # fmt: skip
values = st.sampled_from(
    [b"a", b"127.0.0.1:8080", b"  spaced  ", b"keep-alive", b"chunked", b"5", b"", b"x\ty"]
)
separators = st.sampled_from([b": ", b":", b":\t", b" : ", b": "])  # " : " is malformed
line_ends = st.sampled_from([b"\r\n"] * 8 + [b"\n", b"\r\n "])  # bare LF, obs-fold


benign = st.sampled_from([b"User-Agent", b"Accept", b"Cookie", b"X-Request-Id", b"Test", b"Tea", b"Hostname"])
benign_values = st.sampled_from([b"a", b"127.0.0.1:8080", b"  spaced  ", b"", b"x\ty", b"keep-alive"])


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """Half start clean (plain), then about half of those get one thing that may spoil them."""
    clean = draw(st.booleans())
    if clean:
        method = draw(st.sampled_from([b"GET", b"POST", b"DELETE", b"OPTIONS"]))
        target = draw(st.sampled_from([b"/", b"/a/b?c=d", b"http://example.com/x"]))
        version = b"HTTP/1.1"
        fields = [
            (n, b": ", v, b"\r\n") for n, v in draw(st.lists(st.tuples(benign, benign_values), max_size=5))
        ]
        fields.insert(draw(st.integers(0, len(fields))), (b"Host", b": ", draw(benign_values), b"\r\n"))
    else:
        method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"HEAD", b"PATCH", b"CONNECT"]))
        target = draw(st.sampled_from([b"/", b"*", b"/%20", b"/ /"]))
        version = draw(st.sampled_from([b"HTTP/1.1"] * 6 + [b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1 "]))
        fields = [
            (n, draw(separators), v, draw(line_ends))
            for n, v in draw(st.lists(st.tuples(names, values), max_size=6))
        ]
    if not clean or draw(st.booleans()):
        fields.insert(
            draw(st.integers(0, len(fields))), (draw(names), draw(separators), draw(values), draw(line_ends))
        )
    head = method + b" " + target + b" " + version + b"\r\n"
    head += b"".join(n + sep + v + end for n, sep, v, end in fields) + b"\r\n"
    if draw(st.integers(0, 5)) == 0:
        head += draw(st.sampled_from([b"hello", b"GET / HTTP/1.1\r\n", b"\r\n"]))
    if draw(st.integers(0, 9)) == 0:
        head = b"\r\n" + head  # llhttp skips a stray CRLF before a request
    return head


def plain_request(data: bytes, p: Parsed) -> bool:
    if not p.ok or p.upgrade or not p.complete or p.body or p.version != "1.1" or p.method == b"HEAD":
        return False
    if not data.endswith(b"\r\n\r\n") or data.find(b"\r\n\r\n") != len(data) - 4:
        return False
    if data.startswith(b"\r\n"):
        return False  # llhttp skips it; the lane leaves such a buffer to the long way
    lowered = [n.lower() for n, _ in p.headers]
    if lowered.count(b"host") != 1 or len(lowered) > MAX_FIELDS:
        return False
    host = next(v for n, v in p.headers if n.lower() == b"host")
    if not valid_host(host.strip(b" \t")):
        return False  # the long way answers it 400
    return not any(n in REQUEST_SPECIAL or n.startswith((b"x-forwarded-", b"proxy-")) for n in lowered)


def request_ids(p: Parsed) -> list[bytes]:
    return [v for n, v in p.headers if n.lower() == RID]


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.tuples(requests(), st.booleans()), min_size=1, max_size=8))
def test_request_lane_takes_exactly_the_plain_requests(batch: list[tuple[bytes, bool]]) -> None:
    lane = RequestLane()  # one lane for the batch: what it refused must not spoil what follows
    for data, ids_on in batch:
        p = oracle(data, response=False)
        taken = lane.take(data, 8192, MAX_FIELDS, RID if ids_on else b"")
        ids = request_ids(p) if ids_on else []
        # With ids on, a second id or one to replace goes the long way (which replaces it).
        if plain_request(data, p) and (not ids or (len(ids) == 1 and sane(ids[0]))):
            host = next(v for n, v in p.headers if n.lower() == b"host").rstrip(b" \t")
            assert taken == (p.method, p.url, host, ids[0] if ids else b""), data
        else:
            assert taken is None, data


def test_request_lane_respects_the_size_bound() -> None:
    data = b"GET /" + b"a" * 100 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert RequestLane().take(data, len(data), MAX_FIELDS, RID) is not None
    assert RequestLane().take(data, len(data) - 1, MAX_FIELDS, RID) is None


def test_request_lane_reads_the_request_id_in_any_case() -> None:
    lane = RequestLane()
    for spelling in (b"X-Request-Id", b"x-request-id", b"X-REQUEST-ID"):
        data = b"GET / HTTP/1.1\r\nHost: x\r\n" + spelling + b": abc-1\r\n\r\n"
        assert lane.take(data, 8192, MAX_FIELDS, RID) == (b"GET", b"/", b"x", b"abc-1")
    # Not the field: same length, same first letter.
    data = b"GET / HTTP/1.1\r\nHost: x\r\nX-Request-Ix: abc\r\n\r\n"
    assert lane.take(data, 8192, MAX_FIELDS, RID) == (b"GET", b"/", b"x", b"")


# --- responses ------------------------------------------------------------------------------
response_names = st.sampled_from(
    [
        b"Server", b"Date", b"Content-Type", b"Set-Cookie", b"Content-Length", b"content-length",
        b"Connection", b"CONNECTION", b"Transfer-Encoding", b"Keep-Alive", b"TE", b"Trailer",
        b"Upgrade", b"Tidegate-Draining", b"Proxy-Authenticate", b"Tea", b"Connections",
        b"X-Request-Id",
    ]
)  # fmt: skip
response_values = st.sampled_from(
    [b"nginx", b"close", b"keep-alive", b" Keep-Alive ", b"upgrade", b"x-foo", b"chunked", b"1", b"LEN", b"3"]
)


benign_response = st.sampled_from(
    [b"Server", b"Date", b"Content-Type", b"Set-Cookie", b"Tea", b"Connections", b"x-request-ID"]
)


@st.composite
def responses(draw: st.DrawFn) -> bytes:
    """Half start clean (plain), then about half of those get one thing that may spoil them."""
    clean = draw(st.booleans())
    body = draw(st.sampled_from([b"", b"hello", b"hello from the backend\n"]))
    if clean:
        status = draw(st.sampled_from([200, 201, 301, 404, 500]))
        version = b"HTTP/1.1"
        fields = [
            (n, b": ", v, b"\r\n")
            for n, v in draw(st.lists(st.tuples(benign_response, response_values), max_size=5))
        ]
        fields.insert(draw(st.integers(0, len(fields))), (b"Content-Length", b": ", b"LEN", b"\r\n"))
        conn = draw(st.sampled_from([None, b"keep-alive", b"close", b" Keep-Alive "]))
        if conn is not None:
            fields.insert(draw(st.integers(0, len(fields))), (b"Connection", b": ", conn, b"\r\n"))
    else:
        status = draw(st.sampled_from([100, 101, 200, 204, 304, 502, 503, 504]))
        version = draw(st.sampled_from([b"HTTP/1.1"] * 6 + [b"HTTP/1.0"]))
        fields = [
            (n, draw(separators), v, draw(line_ends))
            for n, v in draw(st.lists(st.tuples(response_names, response_values), max_size=6))
        ]
    if not clean or draw(st.booleans()):
        fields.insert(
            draw(st.integers(0, len(fields))),
            (draw(response_names), draw(separators), draw(response_values), draw(line_ends)),
        )
    reason = draw(st.sampled_from([b" OK", b" Whatever It Is", b" ", b""]))
    head = version + b" %d" % status + reason + b"\r\n"
    head += b"".join(n + sep + (b"%d" % len(body) if v == b"LEN" else v) + end for n, sep, v, end in fields)
    extra = draw(st.sampled_from([b"HTTP/1.1 200 OK\r\n", b"\r\n"])) if draw(st.integers(0, 5)) == 0 else b""
    return head + b"\r\n" + body + extra


def plain_response(data: bytes, p: Parsed) -> bool:
    if not p.ok or p.upgrade or not p.complete or p.version != "1.1":
        return False
    if p.status < 200 or p.status in (204, 304, 503) or p.status in RETRIED:
        return False
    lowered = [(n.lower(), v) for n, v in p.headers]
    if any(n in RESPONSE_SPECIAL or n.startswith(b"proxy-") for n, _ in lowered):
        return False
    lengths = [v for n, v in lowered if n == b"content-length"]
    if len(lengths) != 1 or data.find(b"\r\n\r\n") + 4 + len(p.body) != len(data):
        return False
    conns = [v.strip().lower() for n, v in lowered if n == b"connection"]
    return len(conns) <= 1 and all(c in (b"keep-alive", b"close") for c in conns)


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.tuples(responses(), st.booleans()), min_size=1, max_size=8))
def test_response_lane_takes_exactly_the_plain_responses(batch: list[tuple[bytes, bool]]) -> None:
    lane = ResponseLane()
    for data, ids_on in batch:
        p = oracle(data, response=True)
        rid_open = b"\r\nX-Request-Id: " if ids_on else b""
        taken = lane.take(data, RETRIED, rid_open, b"gw-1" if ids_on else b"")
        if not plain_response(data, p):
            assert taken is None, data
            continue
        assert taken is not None, data
        status, out, keep = taken
        assert status == p.status
        conns = [v.strip().lower() for n, v in p.headers if n.lower() == b"connection"]
        assert keep == (conns != [b"close"])
        # What the client gets: the same status, the same headers but Connection, then Via,
        # and the same body, as llhttp reads it.
        q = oracle(out, response=True)
        assert q.ok and q.complete and q.status == p.status and q.body == p.body
        # A Connection line stays when it says keep-alive: true of the client's hop too.
        kept = [(n, v) for n, v in p.headers if n.lower() != b"connection" or keep]
        # The request id is added unless the instance sent one itself (that one stands).
        if ids_on and not request_ids(p):
            kept.append((b"X-Request-Id", b"gw-1"))
        assert q.headers == [*kept, (b"Via", b"1.1 tidegate")]
        assert out.startswith(data[: data.find(b"\r\n") + 2])  # the status line as it came
