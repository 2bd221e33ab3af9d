"""The process log: --log-level and --log-format on a running tidegate, HTTP client chatter held back."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

from tidegate.testing.etcd import free_port
from tidegate.testing.process import child_env, tidegate
from tidegate.testing.wait import until

RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_json_lines_from_a_running_process(tmp_path: Path) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text('[admin]\nlisten = "127.0.0.1:0"\n')
    proc = tidegate("--log-format", "json", "run", str(cfg), env=child_env({"TIDEGATE_PURE": "1"}))
    try:
        proc.wait_for(r'"msg": "ready"', timeout=30)
    finally:
        assert proc.stop() == 0
    entries = [json.loads(line) for line in proc.lines if line.startswith("{")]
    ready = next(e for e in entries if e["msg"] == "ready")
    assert ready["level"] == "info" and ready["logger"] == "tidegate"
    assert RFC3339_MS.match(ready["time"]), ready
    assert any(e["msg"].startswith("admin listening on 127.0.0.1:") for e in entries)
    # Nothing else on the stream: every line is one JSON object.
    assert all(line.startswith("{") for line in proc.lines if line.strip()), proc.output()


def test_warning_level_keeps_info_lines_out(tmp_path: Path) -> None:
    cfg = tmp_path / "t.toml"
    port = free_port()
    cfg.write_text(f'[admin]\nlisten = "127.0.0.1:{port}"\n')
    proc = tidegate("--log-level", "warning", "run", str(cfg), env=child_env({"TIDEGATE_PURE": "1"}))
    try:
        # No "ready" line at this level: /metrics answering says it is up.
        until(lambda: _answers(port), timeout=30, message=proc.output())
    finally:
        assert proc.stop() == 0
    assert "INFO" not in proc.output(), proc.output()


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def test_http_client_libraries_do_not_log_each_request() -> None:
    code = (
        "import logging\n"
        "from tidegate.observe import process_log\n"
        "process_log.configure('debug', 'text')\n"
        "logging.getLogger('httpx').info('HTTP Request: PUT http://127.0.0.1:2379/v3/kv/put')\n"
        "logging.getLogger('httpcore.connection').debug('connect_tcp.started')\n"
        "logging.getLogger('httpx').warning('kept: a warning')\n"
        "logging.getLogger('tidegate.registry').debug('kept: our own debug')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, check=True, timeout=60
    ).stderr
    assert "HTTP Request" not in out and "connect_tcp" not in out, out
    assert "kept: a warning" in out and "kept: our own debug" in out, out
