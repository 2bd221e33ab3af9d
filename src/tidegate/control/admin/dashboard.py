"""The dashboard: one self-contained HTML page (no external assets) that polls /api/pools every
second and shows, per instance, state, weight, connections, IOPS, bytes in/out and failures,
with drain / enable / maint buttons. When the admin API wants a token, the page asks for it once
and keeps it in the tab's sessionStorage."""

from __future__ import annotations

from functools import cache
from importlib import resources

# The vendored files (static/README.md says where they come from) and their content types.
STATIC_FILES = {
    "uPlot.iife.min.js": "text/javascript; charset=utf-8",
    "uPlot.min.css": "text/css; charset=utf-8",
    "uPlot.LICENSE": "text/plain; charset=utf-8",
}
STATIC_VERSION = "1.6.32"  # uPlot's; in the page's URLs so that caches take a new one


@cache
def static_file(name: str) -> tuple[bytes, str] | None:
    """A vendored file's bytes and content type; None for a name that is not one of them."""
    content_type = STATIC_FILES.get(name)
    if content_type is None:
        return None
    return resources.files("tidegate.control.admin").joinpath("static", name).read_bytes(), content_type


DASHBOARD_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tidegate</title>
<style>
:root { --bg:#0f1419; --fg:#e6e1cf; --dim:#8a9199; --line:#253340; --up:#7fd962; --slow:#e6b450;
        --drain:#59c2ff; --down:#f07178; --maint:#d2a6ff; }
* { box-sizing: border-box; }
body { margin:0; padding:1.2rem 1.6rem; background:var(--bg); color:var(--fg);
       font:14px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
h1 { font-size:1.2rem; margin:0 0 .2rem; } h1 span { color:var(--dim); font-weight:normal; }
h2 { font-size:1rem; margin:1.4rem 0 .4rem; } h2 small { color:var(--dim); font-weight:normal; }
table { border-collapse:collapse; width:100%; }
th, td { padding:.3rem .6rem; border-bottom:1px solid var(--line); text-align:right; white-space:nowrap; }
th { color:var(--dim); font-weight:normal; } th:first-child, td:first-child { text-align:left; }
tr.total td { color:var(--dim); border-bottom:none; }
.state { padding:.05rem .45rem; border-radius:.3rem; color:#0f1419; font-weight:bold; }
.up { background:var(--up); } .slow-start { background:var(--slow); } .draining { background:var(--drain); }
.down { background:var(--down); } .maint { background:var(--maint); }
button { background:none; border:1px solid var(--line); color:var(--fg); border-radius:.3rem;
         padding:.05rem .45rem; cursor:pointer; font:inherit; } button:hover { border-color:var(--fg); }
#status { color:var(--dim); } #status.err { color:var(--down); }
</style></head>
<body>
<h1>tidegate <span>instances, states and the three figures</span></h1>
<div id="status">loading…</div>
<div id="pools"></div>
<script>
"use strict";
const $ = (s) => document.querySelector(s);
function headers() {
  const t = sessionStorage.getItem("tidegate-token");
  return t ? { "Authorization": "Bearer " + t } : {};
}
async function call(method, path, body) {
  const opts = { method, headers: headers() };
  if (body !== undefined) { opts.body = JSON.stringify(body); opts.headers["Content-Type"] = "application/json"; }
  let r = await fetch(path, opts);
  if (r.status === 401) {
    const t = prompt("admin token");
    if (t) { sessionStorage.setItem("tidegate-token", t); opts.headers = { ...opts.headers, ...headers() }; r = await fetch(path, opts); }
  }
  const doc = await r.json();
  if (!r.ok) throw new Error(doc.error || r.statusText);
  return doc;
}
function bytes(n) {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}
function esc(s) { return String(s).replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";"); }
function row(pool, i) {
  const p = encodeURIComponent(pool), a = encodeURIComponent(i.address);
  const act = (v) => `<button data-act="${v}" data-path="/api/pools/${p}/instances/${a}/${v}">${v}</button>`;
  const w = i.effective_weight === i.weight ? i.weight : `${i.weight} <small>(${i.effective_weight})</small>`;
  return `<tr><td>${esc(i.address)}</td><td><span class="state ${esc(i.state)}">${esc(i.state)}</span></td>
    <td>${w}</td><td>${i.connections}</td><td>${i.iops.toFixed(1)}</td><td>${i.requests}</td>
    <td>${bytes(i.bytes_in)}</td><td>${bytes(i.bytes_out)}</td><td>${i.failures}</td><td>${i.retries}</td>
    <td>${act("drain")} ${act("enable")} ${act("maint")}</td></tr>`;
}
function render(doc) {
  $("#pools").innerHTML = doc.pools.map((p) => {
    const t = p.totals;
    return `<h2>${esc(p.name)} <small>${esc(p.scheduler)}${p.slow_start ? ", slow start " + p.slow_start + " s" : ""}</small></h2>
    <table><tr><th>instance</th><th>state</th><th>weight</th><th>conns</th><th>IOPS</th><th>requests</th>
    <th>in</th><th>out</th><th>failures</th><th>retries</th><th></th></tr>
    ${p.instances.map((i) => row(p.name, i)).join("")}
    <tr class="total"><td>total</td><td></td><td></td><td>${t.connections}</td><td>${t.iops.toFixed(1)}</td>
    <td>${t.requests}</td><td>${bytes(t.bytes_in)}</td><td>${bytes(t.bytes_out)}</td><td>${t.failures}</td>
    <td>${t.retries}</td><td></td></tr></table>`;
  }).join("") || "<p>no pools</p>";
}
async function poll() {
  try {
    render(await call("GET", "/api/pools"));
    $("#status").className = ""; $("#status").textContent = "live · " + new Date().toLocaleTimeString();
  } catch (e) {
    $("#status").className = "err"; $("#status").textContent = "error: " + e.message;
  }
}
document.addEventListener("click", async (ev) => {
  const b = ev.target.closest("button[data-path]");
  if (!b) return;
  try { await call("POST", b.dataset.path); await poll(); }
  catch (e) { $("#status").className = "err"; $("#status").textContent = "error: " + e.message; }
});
poll(); setInterval(poll, 1000);
</script>
</body></html>
"""
