"""/livez and /readyz on the admin listener: ready only once listeners are bound and the first
health verdicts are in, for load balancers and orchestrators (no token needed)."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

from tidegate.testing.process import child_env, tidegate
from tidegate.testing.wait import until


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_readyz_turns_200_only_after_the_first_health_verdicts(tmp_path: Path) -> None:
    # An instance that accepts and never answers: the first health round lasts its whole timeout.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    cfg = tmp_path / "t.toml"
    cfg.write_text(
        '[admin]\nlisten = "127.0.0.1:0"\ntoken = "secret"\n'
        f'[[pools]]\nname = "p"\ninstances = [{{ address = "127.0.0.1:{port}" }}]\n'
        '[pools.health]\ntype = "http"\ninterval = "1s"\ntimeout = "8s"\n'
        '[[http]]\nlisten = "127.0.0.1:0"\npool = "p"\n'
    )
    proc = tidegate("run", str(cfg), env=child_env({"TIDEGATE_PURE": "1"}))
    try:
        m = proc.wait_for(r"tidegate: admin listening on (\S+)", timeout=30)
        admin = f"http://{m.group(1)}"
        assert _get(f"{admin}/livez") == (200, "ok\n")
        status, body = _get(f"{admin}/readyz")
        assert status == 503, body
        assert body.startswith("not ready: ") and ("starting" in body or "pool p: first health checks" in body)
        # The check times out (a verdict: failed), and only then is the process ready.
        until(lambda: _get(f"{admin}/readyz")[0] == 200, timeout=60, message=proc.output())
        assert _get(f"{admin}/readyz") == (200, "ready\n")
        assert "tidegate: ready" in proc.output()
    finally:
        assert proc.stop() == 0
        silent.close()
