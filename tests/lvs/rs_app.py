"""A real server for the LVS tests: Python's http.server, HTTP/1.1 keep-alive, answering its own
name on /, ok on /healthz and N bytes on /bytes/N. Prints `rs ready NAME` once listening."""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = sys.argv[1]
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 80
CHUNK = b"x" * 65536


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def end_headers(self) -> None:
        # Say so when the client asked to close: a client that is not told may send its next
        # request on this connection, which the server then resets.
        if self.headers.get("Connection", "").lower() == "close":
            self.send_header("Connection", "close")
        super().end_headers()

    def do_GET(self) -> None:
        if self.path.startswith("/bytes/"):
            n = int(self.path.rsplit("/", 1)[1])
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            while n > 0:
                piece = CHUNK[: min(n, len(CHUNK))]
                self.wfile.write(piece)
                n -= len(piece)
            return
        body = b"ok\n" if self.path == "/healthz" else f"{NAME}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024


server = Server(("0.0.0.0", PORT), Handler)
print(f"rs ready {NAME}", flush=True)
server.serve_forever()
