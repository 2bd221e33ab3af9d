"""The dashboard in a real browser: headless Chromium (Debian's package) driven by Playwright,
against a real `tidegate run` with a pool of three real instances and traffic through its
gateway. The page loads without console errors, its charts draw, a drain clicked in the page
reaches the API, the last serving instance asks before it goes, the token is asked once, and
focus and click targets survive the page's updates. A screenshot is kept in the test's tmp dir
(and written to $TIDEGATE_DASHBOARD_PNG when set: scripts/dashboard_screenshot does, for
docs/dashboard.png)."""

from __future__ import annotations

import json
import os
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tidegate.testing.backends import Backend
from tidegate.testing.process import Proc, tidegate
from tidegate.testing.wait import until

CHROMIUM = os.environ.get("TIDEGATE_CHROMIUM", "/usr/bin/chromium")
TOKEN = "s3cret"
WAIT_MS = 20_000  # the longest any one step in the browser may take

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
pytestmark = [
    pytest.mark.skipif(
        not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)),
        reason=f"no chromium at {CHROMIUM} (Debian: apt-get install chromium; or set TIDEGATE_CHROMIUM)",
    ),
    pytest.mark.timeout(240),
]


class Traffic:
    """Keep-alive GETs through the gateway from a thread, paced (a few hundred a second at most)."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.done = threading.Event()
        self.sent = 0
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._run, name="traffic", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import http.client

        conn = http.client.HTTPConnection(*self.address, timeout=10)
        while not self.done.is_set():
            try:
                path = "/slow?ms=15" if self.sent % 5 == 0 else f"/bytes/{1000 + self.sent * 7919 % 4000}"
                if self.sent % 7 == 3:
                    path = "/status/404"  # for the errors-by-class chart
                conn.request("GET", path)
                conn.getresponse().read()
                self.sent += 1
            except OSError as exc:
                self.errors.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection(*self.address, timeout=10)
            self.done.wait(0.004)  # pacing, not synchronisation
        conn.close()

    def stop(self) -> None:
        self.done.set()
        self.thread.join(15)


class Gateway:
    def __init__(self, proc: Proc, backends: list[Backend]) -> None:
        self.proc = proc
        self.backends = backends
        host, port = proc.address("admin")
        self.admin = f"http://{host}:{port}"

    def api(self, method: str, path: str, token: str | None = TOKEN, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.admin + path, data=data, method=method)
        req.add_header("content-type", "application/json")
        if token:
            req.add_header("authorization", f"Bearer {token}")
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    def state(self, backend: Backend) -> str:
        doc = self.api("GET", f"/api/pools/web/instances/{backend.address}")
        return str(doc["state"])


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    backends = [Backend(name) for name in ("a", "b", "c")]
    path = tmp_path_factory.mktemp("dashboard") / "tidegate.toml"
    path.write_text(
        f"""
[admin]
listen = "127.0.0.1:0"
token = "{TOKEN}"

[[pools]]
name = "web"
slow_start = 3
health = {{ type = "http", path = "/", interval = 1 }}

[[http]]
listen = "127.0.0.1:0"
pool = "web"

[[tcp]]
listen = "127.0.0.1:0"
pool = "web"

[dns]
listen = "127.0.0.1:0"
zone = "example.test."
nameservers = ["ns1.example.test."]
[[dns.records]]
name = "www.example.test."
pool = "web"
ttl = 5
"""
    )
    proc = tidegate("run", str(path), "--grace", "2")
    try:
        proc.wait_for(r"tidegate: ready", 30)
        gw = Gateway(proc, backends)
        # Registered as `tidegate serve` does, with the version each instance announced.
        for b, version in zip(backends, ("2.4.0", "2.4.0", "2.3.1"), strict=True):
            body = {"address": b.address, "meta": {"version": version}}
            gw.api("POST", "/api/pools/web/instances", body=body)
        traffic = Traffic(proc.address("http"))
        try:
            yield gw
        finally:
            traffic.stop()
            assert traffic.sent > 0, traffic.errors[-3:]
    finally:
        proc.stop()
        for b in backends:
            b.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, timeout=WAIT_MS)
        try:
            yield b
        finally:
            b.close()


class Page:
    """A tab on the dashboard that records console errors and the API calls it makes."""

    def __init__(self, browser: Any, gateway: Gateway, token: str | None = TOKEN, clock: bool = False):
        self.context = browser.new_context(viewport={"width": 1280, "height": 800})
        self.page = self.context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.errors: list[str] = []
        self.api_calls: list[tuple[str, int]] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on(
            "response", lambda r: self.api_calls.append((r.url, r.status)) if "/api/" in r.url else None
        )
        if clock:
            self.page.clock.install()  # the page's timers run only when the test says so
        if token:
            self.page.add_init_script(f"sessionStorage.setItem('tidegate-token', {json.dumps(token)})")
        self.page.goto(gateway.admin + "/")

    def ticks(self) -> int:
        return int(self.page.evaluate("window.tidegate.ticks"))

    def wait_ticks(self, n: int) -> None:
        """Wait until the page has polled `n` more times (its own updates, not a sleep)."""
        start = self.ticks()
        self.page.wait_for_function(f"window.tidegate.ticks >= {start + n} && !window.tidegate.busy")

    def button(self, backend: Backend, act: str) -> Any:
        return self.page.locator(f'button[data-act="{act}"][data-address="{backend.address}"]')

    def close(self) -> None:
        self.context.close()


def _no_errors(page: Page) -> None:
    # A 401 in the token test is the API's answer, which Chromium also logs as a console error.
    real = [e for e in page.errors if "401" not in e]
    assert not real, real


def test_the_page_loads_and_its_charts_draw(browser: Any, gateway: Gateway, tmp_path: Path) -> None:
    tab = Page(browser, gateway)
    try:
        page = tab.page
        page.wait_for_selector("tr.inst >> nth=2")
        assert page.locator("tr.inst").count() == 3
        # The history the server kept draws at once, then grows: wait for a chart whose series
        # has traffic in it, and for pixels of that series' colour on its canvas.
        page.wait_for_function(
            """() => window.tidegate.charts.some(c => c.plot && c.title.startsWith('requests/s')
                 && (c.plot.data[1] || []).filter(v => v > 0).length >= 3)"""
        )
        # Series painted on the canvas: saturated pixels, which neither the background, the grid
        # nor the axes have (polled: uPlot draws on its next frame; the instances' lines may
        # cover each other, equal as round-robin makes them).
        page.wait_for_function(
            """() => {
                const c = window.tidegate.charts.find(c => c.title.startsWith('requests/s'));
                const canvas = c.box.querySelector('canvas');
                const px = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
                let n = 0;
                for (let i = 0; i < px.length; i += 4)
                    if (Math.max(px[i], px[i+1], px[i+2]) - Math.min(px[i], px[i+1], px[i+2]) > 100) n++;
                return n > 50;
            }"""
        )
        assert page.locator(".chart canvas").count() >= 5
        # Errors by status class: the traffic's 404s are a 4xx line with points above 0.
        page.wait_for_function(
            """() => window.tidegate.charts.some(c => c.plot && c.title === 'errors/s by class'
                 && (c.plot.data[1] || []).filter(v => v > 0).length >= 2)"""
        )
        # The pool's facts and the health column come from the other layers.
        until(lambda: "last check" in page.inner_text("thead"))
        # The other layers' figures about the pool: health, HTTP, TCP and DNS.
        facts = page.inner_text("section[data-pool=web] > .facts")
        for fact in ("health.check.type http", "http.listen", "tcp.connections", "dns.in_answers 127.0.0.1"):
            assert fact in facts, (fact, facts)
        _no_errors(tab)
        page.screenshot(path=str(tmp_path / "dashboard-first.png"))
    finally:
        tab.close()


def test_a_drain_clicked_in_the_page_reaches_the_api_and_focus_survives(
    browser: Any, gateway: Gateway, tmp_path: Path
) -> None:
    a, b, c = gateway.backends
    tab = Page(browser, gateway)
    try:
        page = tab.page
        page.wait_for_selector("tr.inst >> nth=2")
        drain_b = tab.button(b, "drain")
        assert drain_b.is_enabled() and tab.button(b, "enable").is_disabled()
        # Focus and click targets survive the once-a-second updates: the same element stays
        # focused across several polls.
        drain_b.focus()
        handle = drain_b.element_handle()
        tab.wait_ticks(3)
        assert page.evaluate("(el) => el.isConnected && el === document.activeElement", handle)
        page.keyboard.press("Enter")  # the focused button, by keyboard
        until(lambda: gateway.state(b) == "draining", 15, message="drain from the page in the API")
        page.wait_for_function(
            f"""() => document.querySelector('button[data-act="enable"][data-address="{b.address}"]')
                .disabled === false"""
        )
        assert tab.button(b, "drain").is_disabled()
        # The drain shows in the event list, made by an operator.
        page.wait_for_function("document.querySelector('#events').textContent.includes('operator: drain')")
        # A row opens on click into its charts and events, and stays open across updates.
        page.locator(f'tr.inst[data-address="{b.address}"] td >> nth=0').click()
        page.wait_for_selector("tr.detail .events li")
        tab.wait_ticks(2)
        assert page.locator("tr.detail").count() == 1
        # The last serving instance asks first: with b draining and c in maint, a is the last.
        gateway.api("POST", f"/api/pools/web/instances/{c.address}/maint")
        page.wait_for_function(
            f"""() => document.querySelector('button[data-act="maint"][data-address="{c.address}"]')
                .disabled"""
        )
        tab.button(a, "drain").click()
        page.wait_for_selector("#confirm[open]")
        assert "last instance serving pool web" in page.inner_text("#confirm-text")
        page.click("#confirm-cancel")
        page.wait_for_selector("#confirm:not([open])", state="attached")
        assert gateway.state(a) in ("up", "slow-start")
        tab.button(a, "drain").click()
        page.click("#confirm-ok")
        until(lambda: gateway.state(a) == "draining", 15, message="confirmed drain in the API")
        # Back into rotation, from the page: traffic leaves and comes back in the charts.
        for backend in (a, b, c):
            tab.button(backend, "enable").click()
            until(lambda backend=backend: gateway.state(backend) in ("up", "slow-start"), 15)
        _no_errors(tab)
        wanted = os.environ.get("TIDEGATE_DASHBOARD_PNG")
        if wanted:
            # For the README: a rolling upgrade's shape, b leaving and coming back, in context.
            tab.wait_ticks(10)
            gateway.api("POST", f"/api/pools/web/instances/{b.address}/drain")
            tab.wait_ticks(12)
            gateway.api("POST", f"/api/pools/web/instances/{b.address}/enable")
            tab.wait_ticks(15)
        shot = tmp_path / "dashboard.png"
        page.evaluate("window.scrollTo(0, 0)")  # the clicks scrolled to their buttons
        tab.wait_ticks(2)
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
        if wanted:
            shutil.copyfile(shot, wanted)
    finally:
        tab.close()


def test_the_token_is_asked_once(browser: Any, gateway: Gateway) -> None:
    tab = Page(browser, gateway, token=None, clock=True)
    try:
        page = tab.page
        page.wait_for_selector("#signin.shown")
        assert page.evaluate("document.activeElement.id") == "token"
        assert "needs a token" in page.inner_text("#status")
        asked = len(tab.api_calls)
        assert asked >= 1 and all(status == 401 for _, status in tab.api_calls)
        page.clock.run_for(10_000)  # ten polling periods: nothing more is asked, no prompt
        assert len(tab.api_calls) == asked
        page.fill("#token", "wrong")
        page.click("#signin button")
        page.wait_for_function("document.querySelector('#status').textContent.includes('wrong token')")
        assert page.locator("#signin.shown").count() == 1
        asked = len(tab.api_calls)
        page.clock.run_for(10_000)
        assert len(tab.api_calls) == asked
        page.fill("#token", TOKEN)
        page.click("#signin button")
        page.wait_for_selector("tr.inst >> nth=2")
        assert page.locator("#signin.shown").count() == 0
        with pytest.raises(urllib.error.HTTPError):
            gateway.api("GET", "/api/pools", token=None)
    finally:
        tab.close()
