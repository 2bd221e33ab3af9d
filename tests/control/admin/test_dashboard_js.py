"""The dashboard's script, run by node against a real /api/pools answer: it renders every instance
with its figures, and its buttons call the admin API. (Skipped where node is missing.)"""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest

NODE = shutil.which("node") or shutil.which("nodejs")

HARNESS = r"""
const vm = require("vm");
const [script, doc] = [process.argv[1], JSON.parse(process.argv[2])];
const elems = {};
const calls = [];
let clickHandler = null;
const sandbox = {
  document: {
    querySelector: (s) => (elems[s] = elems[s] || { innerHTML: "", textContent: "", className: "" }),
    addEventListener: (type, fn) => { if (type === "click") clickHandler = fn; },
  },
  sessionStorage: { getItem: () => null, setItem: () => {} },
  fetch: async (path, opts) => { calls.push([opts.method, path]); return { status: 200, ok: true, json: async () => doc }; },
  setInterval: () => 0, prompt: () => null, console, JSON, Date, Error, String, Promise,
};
vm.runInNewContext(script, sandbox);
setTimeout(async () => {
  const button = { dataset: { path: "/api/pools/web/instances/127.0.0.1%3A9001/drain" } };
  await clickHandler({ target: { closest: () => button } });
  console.log(JSON.stringify({ pools: elems["#pools"].innerHTML, status: elems["#status"].textContent, calls }));
}, 50);
"""


@pytest.mark.skipif(NODE is None, reason="node is not installed")
async def test_dashboard_renders_the_api_answer(running) -> None:
    run = await running(
        {
            "pools": [
                {
                    "name": "web",
                    "slow_start": 10,
                    "instances": [{"address": "127.0.0.1:9001"}, {"address": "127.0.0.1:9002", "weight": 2}],
                }
            ]
        }
    )
    web = run.rt.pools["web"]
    c = web.get("127.0.0.1:9001").counters
    c.active, c.completed, c.bytes_in, c.bytes_out, c.failures, c.retries = (
        4,
        1234,
        1536,
        3 * 1024 * 1024,
        7,
        2,
    )
    await run.client.post("/api/pools/web/instances/127.0.0.1:9002/maint")
    doc = (await run.client.get("/api/pools")).text
    html = (await run.client.get("/")).text
    script = html[html.index("<script>") + len("<script>") : html.index("</script>")]
    proc = await asyncio.create_subprocess_exec(
        NODE, "-e", HARNESS, script, doc, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    got = json.loads(out)
    rendered = got["pools"]
    assert "<h2>web <small>round-robin, slow start 10 s</small></h2>" in rendered
    row1 = rendered[rendered.index("127.0.0.1:9001") : rendered.index("127.0.0.1:9002")]
    for text in (
        'class="state up"',
        "<td>4</td>",
        "<td>1234</td>",
        "1.5 KiB",
        "3.0 MiB",
        "<td>7</td>",
        "<td>2</td>",
    ):
        assert text in row1, (text, row1)
    assert 'class="state maint"' in rendered
    assert "/api/pools/web/instances/127.0.0.1%3A9002/enable" in rendered
    assert got["status"].startswith("live")
    assert got["calls"][0] == ["GET", "/api/pools"]
    assert ["POST", "/api/pools/web/instances/127.0.0.1%3A9001/drain"] in got["calls"]
