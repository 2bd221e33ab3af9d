"""The benchmark's readings of wrk and /proc, and the gateway- and DNS-CPU harnesses end to end."""

from __future__ import annotations

import os

import pytest

from tidegate.bench import dns_cpu, gateway_cpu, tcp_cpu
from tidegate.bench.kit import cpu_seconds, median_spread, parse_wrk, peak_rss, reset_peak_rss

WRK_OUT = """Running 1s test @ http://127.0.0.1:18099/e
  1 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   442.02us    1.28ms  15.54ms   90.91%
    Req/Sec   126.01k    58.10k  185.68k    50.00%
  Latency Distribution
     50%   41.00us
     75%   44.00us
     90%    1.54ms
     99%    5.20ms
  125457 requests in 1.01s, 44.75MB read
  Non-2xx or 3xx responses: 125457
Requests/sec: 124474.89
Transfer/sec:     44.40MB
"""


def test_parse_wrk_reads_rate_percentiles_and_problems() -> None:
    res = parse_wrk(WRK_OUT)
    assert res is not None
    assert res.rps == pytest.approx(124474.89)
    assert res.p50 == pytest.approx(41e-6)
    assert res.p99 == pytest.approx(5.2e-3)
    assert res.problems == "Non-2xx or 3xx responses: 125457"


def test_parse_wrk_without_latency_report_is_none() -> None:
    assert parse_wrk(WRK_OUT.replace("     99%    5.20ms\n", "")) is None
    assert parse_wrk("unable to connect to 127.0.0.1:1 Connection refused") is None


def test_median_spread() -> None:
    assert median_spread([10.0, 12.0, 8.0]) == (10.0, pytest.approx(0.4))
    assert median_spread([5.0]) == (5.0, 0.0)


def test_proc_readings_of_this_process() -> None:
    pid = os.getpid()
    assert cpu_seconds(pid) > 0
    reset_peak_rss(pid)
    before = peak_rss(pid)
    block = bytearray(64 << 20)  # touched: 64 MiB more resident
    for i in range(0, len(block), 4096):
        block[i] = 1
    assert peak_rss(pid) >= before + (60 << 20)
    del block


async def test_gateway_cpu_harness_proxies_every_request() -> None:
    # The harness raises unless every request was answered, counted and nothing was closed.
    per_request = await gateway_cpu.measure(requests=2000, connections=10)
    assert 0 < per_request < 0.01


def test_dns_cpu_harness_answers_every_query() -> None:
    # The harness raises unless every query was answered without an internal error.
    assert 0 < dns_cpu.measure(2000) < 0.01
    assert 0 < dns_cpu.measure(2000, cookie=True) < 0.01
    _, proto, transport = dns_cpu.service()
    for wire in dns_cpu.queries(n=10):
        proto.datagram_received(wire, dns_cpu.CLIENT)
        assert transport.last[:2] == wire[:2] and transport.last[2] & 0x80  # its id, a response


def test_tcp_cpu_harness_relays_every_connection_and_message(capsys: pytest.CaptureFixture[str]) -> None:
    # The harness raises unless every connection completed through the real TcpService.
    assert (
        tcp_cpu.main(["--connections", "300", "--messages", "1000", "--concurrency", "4", "--repeat", "1"])
        == 0
    )
    out = capsys.readouterr().out
    assert "per connection" in out and "per message" in out
