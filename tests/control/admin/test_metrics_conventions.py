"""/metrics of a running tidegate passes `promtool check metrics` (Prometheus' own linter) with no
warning, and carries process_* and tidegate_build_info."""

from __future__ import annotations

import shutil
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tidegate.testing.backends import Backend
from tidegate.testing.process import child_env, tidegate
from tidegate.testing.wait import until

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian: prometheus)")


@pytest.mark.parametrize("workers", [1, 2])
def test_live_metrics_pass_promtool_with_no_warning(tmp_path: Path, workers: int) -> None:
    with Backend("b") as b:
        cfg = tmp_path / "t.toml"
        cfg.write_text(
            '[admin]\nlisten = "127.0.0.1:0"\n'
            f'[[pools]]\nname = "web"\ninstances = [{{ address = "{b.address}" }}]\n'
            '[pools.health]\ntype = "http"\npath = "/"\ninterval = "1s"\n'
            '[[http]]\nlisten = "127.0.0.1:0"\npool = "web"\n'
            f"workers = {workers}\n"
            '[[tcp]]\nlisten = "127.0.0.1:0"\npool = "web"\n'
        )
        proc = tidegate("run", str(cfg), env=child_env({"TIDEGATE_PURE": "1"}))
        try:
            proc.wait_for(r"tidegate: ready", timeout=60)
            http_host, http_port = proc.address("http")
            with urllib.request.urlopen(f"http://{http_host}:{http_port}/", timeout=10) as r:
                assert r.status == 200
            # A request the gateway answers itself: 400, counted by status code.
            with socket.create_connection((http_host, http_port), timeout=10) as sock:
                sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
                assert sock.recv(100).startswith(b"HTTP/1.1 400 ")
            host, port = proc.address("admin")

            def scrape() -> str | None:
                with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as r:
                    text = str(r.read().decode())
                sent = [
                    s.value
                    for f in text_string_to_metric_families(text)
                    if f.name == "tidegate_instance_sent_bytes"
                    for s in f.samples
                ]
                return text if 'code="400"' in text and sent and sent[0] > 0 else None

            # Workers report their figures to the main process about once a second (the GET and
            # the 400 may have gone to different workers).
            text = until(scrape, timeout=30, step=0.2)
        finally:
            assert proc.stop() == 0
    lint = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(), (
        lint.stdout + lint.stderr
    )
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert "process_cpu_seconds" in families and "process_resident_memory_bytes" in families
    (info,) = families["tidegate_build_info"].samples
    assert info.value == 1 and info.labels["version"] == "0.1.0"
    assert info.labels["hot_path"] == "pure Python"  # TIDEGATE_PURE=1 above
    received = families["tidegate_instance_received_bytes"].samples
    assert received and all(s.name == "tidegate_instance_received_bytes_total" for s in received)
    assert families["tidegate_instance_sent_bytes"].samples[0].value > 0
    own = {
        (s.labels["listener"], s.labels["code"]): s.value
        for s in families["tidegate_http_gateway_responses"].samples
        if s.name.endswith("_total")
    }
    assert own == {("http", "400"): 1.0}, own
    assert "tidegate_instance_iops" not in families
    assert "tidegate_tcp_instance_connections_per_second" not in families
