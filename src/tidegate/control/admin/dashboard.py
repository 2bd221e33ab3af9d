"""The dashboard: an HTML page served at / by the admin listener, with its script, style sheet and
chart library (uPlot) from the same listener under /static/ (no CDN, nothing from elsewhere).

Once a second it polls /api/pools (the table: per instance its version, state and time in it,
weight, the figures, the last health check and the cause of its state, with drain / enable /
maint where they do something), /api/history (charts per pool and per instance of the last
minutes, which the server keeps so a fresh page shows them at once) and /api/events (state
changes, who made them). Draining or putting in maint the last instance serving a pool asks
first. When the API wants a token the page shows a sign-in field once, and keeps the token in
the tab's sessionStorage. The page's code is static/dashboard.js.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources

# The vendored files (static/README.md says where they come from) and their content types.
STATIC_FILES = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "uPlot.iife.min.js": "text/javascript; charset=utf-8",
    "uPlot.min.css": "text/css; charset=utf-8",
    "uPlot.LICENSE": "text/plain; charset=utf-8",
}


@cache
def static_file(name: str) -> tuple[bytes, str] | None:
    """A vendored file's bytes and content type; None for a name that is not one of them."""
    content_type = STATIC_FILES.get(name)
    if content_type is None:
        return None
    return resources.files("tidegate.control.admin").joinpath("static", name).read_bytes(), content_type


@cache
def static_version() -> str:
    """A digest of the served files, in the page's URLs: a browser's cached copy (kept a day)
    is never used with a page of another version."""
    digest = hashlib.sha256()
    for name in sorted(STATIC_FILES):
        found = static_file(name)
        assert found is not None
        digest.update(found[0])
    return digest.hexdigest()[:12]


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tidegate</title>
<link rel="stylesheet" href="/static/uPlot.min.css?v={v}">
<link rel="stylesheet" href="/static/dashboard.css?v={v}">
</head>
<body>
<header>
<h1>tidegate <span>pools, instances, the last minutes</span></h1>
<div id="status" role="status">loading…</div>
<form id="signin" autocomplete="off">
<label for="token">admin token</label>
<input id="token" type="password" autocomplete="current-password">
<button type="submit">sign in</button>
</form>
</header>
<main>
<div id="pools"></div>
<p id="empty" hidden>no pools</p>
<h2>events <small>state changes, newest first</small></h2>
<ul id="events" class="events"></ul>
</main>
<dialog id="confirm">
<form method="dialog">
<p id="confirm-text"></p>
<menu><button id="confirm-cancel" value="cancel">cancel</button><button id="confirm-ok" value="ok">yes, go ahead</button></menu>
</form>
</dialog>
<script src="/static/uPlot.iife.min.js?v={v}"></script>
<script src="/static/dashboard.js?v={v}"></script>
</body></html>
"""


def dashboard_html() -> bytes:
    return _PAGE.replace("{v}", static_version()).encode()
