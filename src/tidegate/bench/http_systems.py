"""The systems the HTTP benchmark compares, each started as a reverse proxy in front of the same
two backend instances with the same settings as far as each system has them:

- one worker, one thread: tidegate `workers = 1` (one process, one event loop, which also runs the
  health checks and the admin API), nginx `worker_processes 1`, HAProxy `nbthread 1`;
- keep-alive to the clients and to the instances (nginx `keepalive` + HTTP/1.1 upstream, HAProxy's
  default connection reuse, tidegate's idle pool);
- round robin over the two instances, active HTTP health checks every second (nginx, open
  source, has only passive checks: `max_fails`);
- up to three tries per request on connection failures and 502/503/504 (nginx
  `proxy_next_upstream`, HAProxy `retry-on` + `redispatch`), the request body kept for them
  (nginx's default request buffering; tidegate's body store; HAProxy keeps what fits its buffer);
- X-Forwarded-For/-Proto/-Host set for the instance; no access log anywhere;
- with `tls`, a second listener of the same proxy terminates TLS with the same certificate and key
  (nginx `listen … ssl`, HAProxy `bind … ssl crt`, tidegate `[http.tls]`), each with its defaults
  otherwise (TLS 1.2 and 1.3, session tickets on; nginx keeps no session cache by default, HAProxy
  does, tidegate's OpenSSL contexts do);
- HTTP/2 from clients with prior knowledge (h2c): tidegate `http2 = true` and HAProxy on their
  one port (both tell HTTP/2 by its preface), nginx 1.22 on a port of its own (`listen … http2`:
  its h2c port speaks nothing else); instances still get HTTP/1.1.

The backend instances are nginx with one worker each: `/` answers a short fixed body, `/big` is a
file served with sendfile, `/upload` reads and discards any body.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tidegate.bench.kit import free_port, pinned, wait_port
from tidegate.testing.process import Proc, child_env

BODY = "hello from the backend\n"


@dataclass
class System:
    name: str
    proc: Proc | None  # None: nothing between wrk and the instance
    port: int
    tls_port: int | None = None  # the TLS listener's, when asked for one
    h2_port: int | None = None  # where it takes HTTP/2 with prior knowledge

    @property
    def pid(self) -> int | None:
        return self.proc.popen.pid if self.proc is not None else None


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    both: Path  # the certificate, then the key, in one file (HAProxy's `crt`)


def make_certificate(work: Path) -> TlsFiles:
    """A self-signed P-256 pair for `localhost`, made by the openssl command the README shows."""
    cert, key, both = work / "bench.pem", work / "bench.key", work / "bench-both.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    both.write_bytes(cert.read_bytes() + key.read_bytes())
    return TlsFiles(cert, key, both)


def _user_line() -> str:
    # As root, nginx's workers would run as `nobody` and could not write their temp files here.
    return "user root;" if os.geteuid() == 0 else ""


def start_backend(work: Path, name: str, cpus: str | None) -> System:
    port = free_port()
    conf = work / f"{name}.conf"
    conf.write_text(
        f"""
{_user_line()}
worker_processes 1;
daemon off;
pid {work}/{name}.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    client_max_body_size 0;
    client_body_temp_path {work}/{name}-body;
    default_type text/plain;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {work}/www;
        location = / {{ return 200 "{BODY.rstrip()}\\n"; }}
        location = /healthz {{ return 200 "ok\\n"; }}
        location = /upload {{ return 200 "stored\\n"; }}
    }}
}}
"""
    )
    proc = Proc(pinned(["nginx", "-c", str(conf), "-p", str(work), "-e", "stderr"], cpus))
    wait_port(port, proc)
    return System(name, proc, port)


def start_tidegate(
    work: Path, backends: list[int], cpus: str | None, workers: int = 1, tls: TlsFiles | None = None
) -> System:
    conf = work / "tidegate.toml"
    instances = ", ".join(f'{{ address = "127.0.0.1:{p}" }}' for p in backends)
    conf.write_text(
        f"""
[admin]
listen = "127.0.0.1:0"

[[pools]]
name = "bench"
scheduler = "round-robin"
instances = [ {instances} ]
[pools.health]
type = "http"
path = "/healthz"
interval = "1s"

[[http]]
listen = "127.0.0.1:0"
pool = "bench"
workers = {workers}
http2 = true
[http.retry]
tries = 3
statuses = [502, 503, 504]
[http.limits]
max_body_bytes = "1GiB"
spool_dir = "{work}"
"""
    )
    if tls is not None:
        with conf.open("a") as f:
            f.write(
                f"""
[[http]]
listen = "127.0.0.1:0"
pool = "bench"
workers = {workers}
[http.tls]
certificates = [ {{ cert = "{tls.cert}", key = "{tls.key}" }} ]
[http.retry]
tries = 3
statuses = [502, 503, 504]
[http.limits]
max_body_bytes = "1GiB"
spool_dir = "{work}"
"""
            )
    proc = Proc(pinned([sys.executable, "-m", "tidegate", "run", str(conf)], cpus), env=child_env())
    proc.wait_for(r"tidegate: ready")
    tls_port = proc.address("http.1")[1] if tls is not None else None
    port = proc.address("http")[1]
    return System("tidegate", proc, port, tls_port, port)


def start_nginx(
    work: Path, backends: list[int], cpus: str | None, workers: int = 1, tls: TlsFiles | None = None
) -> System:
    port = free_port()
    h2_port = free_port()
    tls_port = free_port() if tls is not None else None
    tls_lines = (
        f"listen 127.0.0.1:{tls_port} ssl backlog=4096;\n"
        f"        ssl_certificate {tls.cert};\n        ssl_certificate_key {tls.key};"
        if tls is not None
        else ""
    )
    conf = work / "proxy-nginx.conf"
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=5 fail_timeout=30s;" for p in backends)
    conf.write_text(
        f"""
{_user_line()}
worker_processes {workers};
daemon off;
pid {work}/proxy-nginx.pid;
error_log stderr warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    client_max_body_size 1g;
    client_body_temp_path {work}/proxy-nginx-body;
    proxy_temp_path {work}/proxy-nginx-proxy;
    upstream bench {{
{servers}
        keepalive 256;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        listen 127.0.0.1:{h2_port} http2 backlog=4096;
        {tls_lines}
        location / {{
            proxy_pass http://bench;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_next_upstream error timeout http_502 http_503 http_504;
            proxy_next_upstream_tries 3;
            proxy_connect_timeout 2s;
            proxy_read_timeout 60s;
        }}
    }}
}}
"""
    )
    proc = Proc(pinned(["nginx", "-c", str(conf), "-p", str(work), "-e", "stderr"], cpus))
    wait_port(port, proc)
    return System("nginx", proc, port, tls_port, h2_port)


def start_haproxy(
    work: Path, backends: list[int], cpus: str | None, workers: int = 1, tls: TlsFiles | None = None
) -> System:
    port = free_port()
    tls_port = free_port() if tls is not None else None
    tls_frontend = (
        f"""
frontend https_in
    bind 127.0.0.1:{tls_port} ssl crt {tls.both}
    option forwardfor
    http-request set-header X-Forwarded-Proto https
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    default_backend instances"""
        if tls is not None
        else ""
    )
    conf = work / "haproxy.cfg"
    servers = "\n".join(f"    server s{i} 127.0.0.1:{p} check inter 1s" for i, p in enumerate(backends, 1))
    conf.write_text(
        f"""
global
    nbthread {workers}
    maxconn 8000
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    retries 2
    option redispatch 1
    retry-on conn-failure empty-response response-timeout 502 503 504
frontend http_in
    bind 127.0.0.1:{port}
    option forwardfor
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    default_backend instances{tls_frontend}
backend instances
    balance roundrobin
    option httpchk GET /healthz
{servers}
"""
    )
    proc = Proc(pinned(["haproxy", "-db", "-f", str(conf)], cpus))
    wait_port(port, proc)
    return System("haproxy", proc, port, tls_port, port)
