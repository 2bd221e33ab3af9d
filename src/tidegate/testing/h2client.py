"""A blocking HTTP/2 client for tests, on the `h2` library over a plain socket (h2c, prior
knowledge), that can also misbehave: raw frames (hyperframe) and raw bytes go out as given.

    c = H2Client(host, port)
    status, headers, body = c.request("GET", "/")
    c.send_frame(RstStreamFrame(1)); c.wait_goaway()
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import Frame


@dataclass
class Answer:
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: int | None = None  # the RST_STREAM error code, if the gateway reset the stream

    def header(self, name: bytes) -> bytes | None:
        for n, v in self.headers:
            if n == name:
                return v
        return None


class H2Client:
    def __init__(self, host: str, port: int, timeout: float = 20.0, settings: dict[h2.settings.SettingCodes, int] | None = None) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.authority = f"{host}:{port}"
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        if settings:  # sent in the preface's SETTINGS
            self.conn.local_settings = h2.settings.Settings(client=True, initial_values=settings)
        self.conn.initiate_connection()
        self.answers: dict[int, Answer] = {}
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.closed = False
        self.auto_window = True  # acknowledge received DATA (False: a client whose windows stay shut)
        self.flush()

    def flush(self) -> None:
        out = self.conn.data_to_send()
        if out:
            self.sock.sendall(out)

    def send_raw(self, data: bytes) -> None:
        self.flush()
        self.sock.sendall(data)

    def send_frame(self, frame: Frame) -> None:
        self.send_raw(frame.serialize())

    def start(
        self, method: str = "GET", path: str = "/", headers: list[tuple[str, str]] | None = None,
        body: bytes | None = None, end: bool = True,
    ) -> int:
        sid = self.conn.get_next_available_stream_id()
        fields = [(":method", method), (":scheme", "http"), (":authority", self.authority), (":path", path)]
        fields += headers or []
        self.conn.send_headers(sid, [(n.encode(), v.encode()) for n, v in fields], end_stream=end and not body)
        self.answers[sid] = Answer()
        if body:
            self.send_body(sid, body, end)
        self.flush()
        return sid

    def send_body(self, sid: int, body: bytes, end: bool = True) -> None:
        view = memoryview(body)
        a = self.answers[sid]
        while view:
            if a.reset is not None or a.ended:
                return  # answered (or refused) before the body was all sent: the rest is not wanted
            window = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if window <= 0:
                self.flush()
                self.read_some()
                continue
            self.conn.send_data(sid, bytes(view[:window]))
            view = view[window:]
        if end:
            self.conn.end_stream(sid)
        self.flush()

    def read_some(self) -> bool:
        """One read from the socket, its events applied; False once the gateway closed."""
        try:
            data = self.sock.recv(256 * 1024)
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
            return False
        for ev in self.conn.receive_data(data):
            self._event(ev)
        self.flush()
        return True

    def _event(self, ev: h2.events.Event) -> None:
        sid = getattr(ev, "stream_id", None)
        a = self.answers.get(sid) if sid is not None else None
        if isinstance(ev, h2.events.ResponseReceived) and a is not None:
            a.headers = [(bytes(n), bytes(v)) for n, v in ev.headers or []]
            a.status = int(dict(a.headers)[b":status"])
        elif isinstance(ev, h2.events.DataReceived):
            if a is not None:
                a.body += ev.data
            if self.auto_window and ev.flow_controlled_length:
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded) and a is not None:
            a.ended = True
        elif isinstance(ev, h2.events.StreamReset) and a is not None:
            a.reset = int(ev.error_code) if ev.error_code is not None else 0
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = ev
            if ev.error_code == 0:
                # A graceful GOAWAY: streams up to its last_stream_id still complete (RFC 9113
                # §6.8), but h2 closes its state machine on any GOAWAY; reopen it to read them.
                self.conn.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN

    def wait(self, sid: int) -> Answer:
        a = self.answers[sid]
        while not (a.ended or a.reset is not None):
            if not self.read_some():
                raise ConnectionError(f"closed before stream {sid} ended")
        return a

    def request(
        self, method: str = "GET", path: str = "/", headers: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
    ) -> Answer:
        return self.wait(self.start(method, path, headers, body))

    def wait_goaway(self) -> h2.events.ConnectionTerminated:
        """Read until the gateway's GOAWAY (h2 raises on what follows it: ignored) and close."""
        while self.goaway is None:
            try:
                if not self.read_some():
                    raise ConnectionError("closed without GOAWAY")
            except h2.exceptions.ProtocolError:
                if self.goaway is None:
                    raise
        return self.goaway

    def wait_closed(self) -> None:
        while True:
            try:
                if not self.read_some():
                    return
            except h2.exceptions.ProtocolError:
                continue

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> H2Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
