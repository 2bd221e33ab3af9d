"""`tidegate bench` from the command line: every system measured, the tables printed."""

from __future__ import annotations

import re
import shutil

import pytest

from tidegate.testing.process import run_tidegate


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (scripts/bootstrap)")
def test_bench_prints_the_comparison_tables() -> None:
    out = run_tidegate(
        "bench",
        "--rounds=1",
        "--seconds=1",
        "--transfer-mb=5",
        "--transfer-rounds=1",
        "--markdown",
        timeout=110,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    rows = {
        m.group(1): m.group(0)
        for m in re.finditer(r"^\| (direct \(ceiling\)|tidegate|nginx|haproxy) \|.*$", text, re.M)
    }
    # requests/s table and transfer table each have a row per system; every row says no problems
    assert set(rows) == {"direct (ceiling)", "tidegate", "nginx", "haproxy"}, text
    for line in re.findall(r"^\| (?:direct \(ceiling\)|tidegate|nginx|haproxy) \| [\d,]+ \| .*$", text, re.M):
        if line.count("|") == 9:  # the requests/s table
            assert line.rstrip().endswith("| none |"), line
    assert re.search(r"^\| nginx \| [\d.]+ \([\d.]+ to [\d.]+\) \| ", text, re.M), text  # ratios
    transfer = re.search(r"^\| tidegate \| ([\d,]+) \| ([\d,]+) \| (\d+) MiB \| (\d+) MiB \|$", text, re.M)
    assert transfer is not None, text
    assert int(transfer.group(1).replace(",", "")) > 0 and int(transfer.group(2).replace(",", "")) > 0
    assert "proxy pinned to CPU 0" in text or "not pinned" in text
    # HTTP/2 (h2load): a row per proxy, tidegate's ratio to nginx, no failed streams
    assert "HTTP/2 requests/s, h2load -c10 -m10" in text, text
    h2_nginx = re.search(r"^\| nginx \| ([\d,]+) \| \d+% \| \d+% \| [\d,]+ \| ([\d.]+) \(", text, re.M)
    assert h2_nginx is not None and float(h2_nginx.group(2)) > 0, text
    assert "h2load:" not in text, text
    # HTTPS: a row per proxy with every rate above zero, and the ratios to nginx and HAProxy
    tls = text[text.index("HTTPS (TLS 1.3") :]
    for name in ("tidegate", "nginx", "haproxy"):
        row = re.search(rf"^\| {name} \|(( [\d,]+ \|){{6}})$", tls, re.M)
        assert row is not None, tls
        assert all(int(v.replace(",", "")) > 0 for v in row.group(1).strip(" |").split(" | ")), row.group(0)
    assert re.search(r"^\| tidegate ÷ nginx \|( [\d.]+ \([\d.]+ to [\d.]+\) \|){6}$", tls, re.M), tls
