from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tidegate.observe.counters import LATENCY_BOUNDS, Counters
from tidegate.observe.prometheus import InstanceCollector, InstanceView

STATES = ("up", "slow-start", "draining", "down", "maint")


def scrape(views: list[InstanceView]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reg = CollectorRegistry()
    reg.register(InstanceCollector(lambda: views, STATES))
    text = generate_latest(reg).decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_figures_read_live_with_conventional_names() -> None:
    c = Counters()
    views = [InstanceView("web", "127.0.0.1:9001", c, "draining", 3, 0.0, 12.5)]
    c.completed, c.active, c.bytes_in, c.bytes_out, c.failures, c.retries = 7, 2, 700, 7000, 1, 4
    for seconds in (0.001, 0.004, 0.2, 99.0):
        c.record_latency(seconds)
    got = scrape(views)
    lab = (("instance", "127.0.0.1:9001"), ("pool", "web"))
    assert got[("tidegate_instance_requests_total", lab)] == 7
    assert got[("tidegate_instance_active_requests", lab)] == 2
    assert got[("tidegate_instance_received_bytes_total", lab)] == 700
    assert got[("tidegate_instance_sent_bytes_total", lab)] == 7000
    # the 0.1 names, for one release
    assert got[("tidegate_instance_bytes_in_total", lab)] == 700
    assert got[("tidegate_instance_bytes_out_total", lab)] == 7000
    assert got[("tidegate_instance_failures_total", lab)] == 1
    assert got[("tidegate_instance_retries_total", lab)] == 4
    # a rate is rate()'s job: IOPS stays in the API and the dashboard
    assert not [k for k in got if k[0] == "tidegate_instance_iops"]
    assert got[("tidegate_instance_weight", lab)] == 3
    assert got[("tidegate_instance_effective_weight", lab)] == 0
    for s in STATES:
        assert got[("tidegate_instance_state", (*lab[:1], ("pool", "web"), ("state", s)))] == (
            1 if s == "draining" else 0
        )
    h = "tidegate_instance_response_seconds"
    assert got[(h + "_bucket", (*lab[:1], ("le", "0.005"), ("pool", "web")))] == 2
    assert got[(h + "_bucket", (*lab[:1], ("le", "0.25"), ("pool", "web")))] == 3
    assert got[(h + "_bucket", (*lab[:1], ("le", "60.0"), ("pool", "web")))] == 3
    assert got[(h + "_bucket", (*lab[:1], ("le", "+Inf"), ("pool", "web")))] == 4
    assert got[(h + "_count", lab)] == 4
    assert abs(got[(h + "_sum", lab)] - 99.205) < 1e-9
    # live: a later scrape sees later figures without anyone pushing them
    c.completed += 5
    assert scrape(views)[("tidegate_instance_requests_total", lab)] == 12


def test_buckets_are_cumulative_and_complete() -> None:
    c = Counters()
    for i, bound in enumerate(LATENCY_BOUNDS):
        for _ in range(i + 1):
            c.record_latency(bound)  # on the bound counts in that bucket (le)
    got = scrape([InstanceView("p", "a:1", c, "up", 1, 1.0, 0.0)])
    running = 0
    for i, bound in enumerate(LATENCY_BOUNDS):
        running += i + 1
        key = (
            "tidegate_instance_response_seconds_bucket",
            (("instance", "a:1"), ("le", repr(bound)), ("pool", "p")),
        )
        assert got[key] == running


def test_no_pools_no_series() -> None:
    reg = CollectorRegistry()
    reg.register(InstanceCollector(lambda: [], STATES))
    text = generate_latest(reg).decode()
    assert "# TYPE tidegate_instance_requests_total counter" in text
    assert "tidegate_instance_requests_total{" not in text
