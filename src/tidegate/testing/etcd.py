"""A real single-member etcd for tests: loopback ports, a temporary data dir, stopped and started
again at will (same ports, same data), ready when etcd says it serves clients."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

from tidegate.testing.process import Proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Etcd:
    def __init__(self, data_dir: Path, client_port: int | None = None) -> None:
        binary = shutil.which("etcd")
        if binary is None:
            raise RuntimeError("etcd is not installed (Debian package etcd-server)")
        self.binary = binary
        self.data_dir = data_dir
        self.client_port = client_port or free_port()
        self.peer_port = free_port()
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    def start(self, timeout: float = 20.0) -> Etcd:
        client, peer = self.url, f"http://127.0.0.1:{self.peer_port}"
        self.proc = Proc(
            [
                self.binary,
                "--name=t",
                f"--data-dir={self.data_dir}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=t={peer}",
            ]
        )
        self.proc.wait_for(r"ready to serve client requests", timeout)
        return self

    def kill(self) -> None:
        """SIGKILL: etcd vanishes the way a crashed or unplugged member does."""
        if self.proc is not None:
            self.proc.popen.kill()
            self.proc.stop()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None
