// The dashboard (control/admin/dashboard.py serves the page): polls the admin API once a second,
// draws the last minutes from /api/history with uPlot, and keeps every element it made: rows and
// buttons are made once per instance and their cells updated in place, so a click or the
// keyboard focus survives the updates. Data goes into the page as text (textContent), never as
// HTML.
"use strict";
(() => {
  const TOKEN_KEY = "tidegate-token";
  const KEEP = 300; // points per series, as many as the server keeps
  const HEIGHT = 130; // of a chart's plot, in CSS pixels
  const PALETTE = ["#59c2ff", "#7fd962", "#e6b450", "#d2a6ff", "#f07178", "#95e6cb", "#ffb454",
    "#c2d94c", "#f29668", "#73d0ff"];
  const SERVING = new Set(["up", "slow-start"]);
  const BASE_POOL = new Set(["name", "scheduler", "hash_key", "slow_start", "totals", "instances"]);
  const BASE_INSTANCE = new Set(["address", "state", "weight", "effective_weight", "ramp", "connections",
    "iops", "requests", "bytes_in", "bytes_out", "failures", "retries", "latency", "meta", "origin",
    "version", "in_state_s", "removed"]);

  const $ = (sel, root = document) => root.querySelector(sel);
  function el(tag, attrs = {}, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v);
    }
    e.append(...kids);
    return e;
  }
  const set = (e, text) => { if (e.textContent !== text) e.textContent = text; };

  // Everything the page knows; `window.tidegate` lets tests (and the curious) look at it.
  const ui = {
    signedOut: false, busy: false, pools: new Map(), docs: new Map(), colors: new Map(),
    hist: { times: [], pools: {} }, charts: [], eventsRecorded: -1, ticks: 0,
  };
  window.tidegate = ui;

  // --- the admin API ---------------------------------------------------------------------------
  class Unauthorized extends Error {}
  async function call(method, path) {
    const headers = {};
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = "Bearer " + token;
    const r = await fetch(path, { method, headers });
    if (r.status === 401) throw new Unauthorized(token ? "wrong token" : "the admin API needs a token");
    const doc = await r.json();
    if (!r.ok) throw new Error(doc.error || r.statusText);
    return doc;
  }
  function status(text, error = false) {
    const s = $("#status");
    s.className = error ? "err" : "";
    set(s, text);
  }
  // Asked once: polling stops until the operator signs in (no prompt, no re-asking each second).
  function signIn(why) {
    const form = $("#signin");
    ui.signedOut = true;
    status("sign in: " + why, true);
    if (!form.classList.contains("shown")) {
      form.classList.add("shown");
      $("#token").focus();
    }
  }
  $("#signin").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const token = $("#token").value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("#token").value = "";
    $("#signin").classList.remove("shown");
    ui.signedOut = false;
    status("signing in…");
    tick();
  });

  // --- figures as text ---------------------------------------------------------------------------
  function bytes(n) {
    const u = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : String(n)) + " " + u[i];
  }
  function duration(s) {
    if (s === null || s === undefined) return "—";
    s = Math.floor(s);
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
  }
  function scalar(v) {
    if (v === null || v === undefined) return "—";
    if (Array.isArray(v)) return v.length <= 4 ? v.map(scalar).join(", ") || "none" : v.length + " items";
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(2);
    return String(v);
  }
  // A layer's facts as "key value" pairs, nested objects one level deep (dns.max_ttl 30).
  function flatten(prefix, facts, out, limit = 10) {
    for (const [k, v] of Object.entries(facts || {})) {
      if (out.length >= limit) break;
      if (v && typeof v === "object" && !Array.isArray(v)) {
        for (const [k2, v2] of Object.entries(v)) {
          if (out.length >= limit) break;
          if (v2 === null || typeof v2 !== "object" || Array.isArray(v2)) out.push([`${prefix}${k}.${k2}`, scalar(v2)]);
        }
      } else out.push([prefix + k, scalar(v)]);
    }
    return out;
  }
  function renderFacts(container, pairs) {
    const text = pairs.map(([k, v]) => k + "=" + v).join("\u0001");
    if (container.dataset.facts === text) return; // unchanged: leave the DOM alone
    container.dataset.facts = text;
    container.replaceChildren(...pairs.map(([k, v]) => el("span", {}, k + " ", el("b", { text: v }))));
  }
  // What each layer says about a pool that an operator looks for first (the API has it all);
  // a layer not named here shows its first few facts.
  const PICK = {
    health: ["check.type", "check.path", "check.interval", "outlier.consecutive_failures"],
    http: ["listen", "idle_upstream_connections"],
    tcp: ["listen", "connections", "accepted", "unplaced", "drain_cut"],
    dns: ["zone", "in_answers", "max_ttl", "serial", "fail_open", "queries_per_s"],
    lvs: ["mode", "vip", "connections", "forwarded", "dropped"],
  };
  function poolFacts(pd) {
    const pairs = [];
    for (const [name, facts] of Object.entries(pd)) {
      if (BASE_POOL.has(name) || !facts || typeof facts !== "object") continue;
      const pick = PICK[name.split(".")[0]];
      if (!pick) { flatten(name + ".", facts, pairs, pairs.length + 6); continue; }
      const all = { ...facts };
      if (facts.records) { // DNS: queries/s of the pool's records together
        all.queries_per_s = Object.values(facts.records).reduce((n, r) => n + (r.queries_per_s || 0), 0);
      }
      for (const key of pick) {
        const v = key.split(".").reduce((o, k) => (o && typeof o === "object" ? o[k] : undefined), all);
        if (v !== undefined) pairs.push([name + "." + key, scalar(v)]);
      }
    }
    return pairs;
  }
  function colorOf(pool, address) {
    const key = pool + " " + address;
    if (!ui.colors.has(key)) {
      const used = [...ui.colors.keys()].filter((k) => k.startsWith(pool + " ")).length;
      ui.colors.set(key, PALETTE[used % PALETTE.length]);
    }
    return ui.colors.get(key);
  }

  // --- history: merged point by point, charts drawn from it -------------------------------------------
  function merge(doc) {
    const h = ui.hist;
    const old = h.times.length, fresh = doc.times.length;
    if (!fresh) return;
    const pad = (n) => new Array(n).fill(null);
    const extend = (series, incoming) => {
      for (const m of doc.metrics) {
        if (!series[m]) series[m] = pad(old);
        series[m].push(...(incoming && incoming[m] ? incoming[m] : pad(fresh)));
      }
    };
    h.times.push(...doc.times);
    for (const [name, p] of Object.entries(doc.pools)) {
      const mine = h.pools[name] || (h.pools[name] = { pool: {}, instances: {} });
      extend(mine.pool, p.pool);
      for (const [addr, s] of Object.entries(p.instances)) {
        if (!mine.instances[addr]) mine.instances[addr] = {};
        extend(mine.instances[addr], s);
      }
    }
    for (const [name, mine] of Object.entries(h.pools)) { // series the answer did not name: gaps
      const p = doc.pools[name];
      if (!p) extend(mine.pool, null);
      for (const [addr, s] of Object.entries(mine.instances)) if (!p || !p.instances[addr]) extend(s, null);
    }
    const cut = h.times.length - KEEP;
    if (cut > 0) {
      h.times.splice(0, cut);
      for (const mine of Object.values(h.pools)) {
        for (const s of [mine.pool, ...Object.values(mine.instances)]) for (const m in s) s[m].splice(0, cut);
      }
    }
  }
  const grid = { stroke: "#253340", width: 1 };
  const clock = (v) => new Date(v * 1000).toTimeString().slice(0, 8);
  const xAxis = { stroke: "#8a9199", grid, ticks: grid, space: 70, values: (u, vals) => vals.map(clock) };
  const yAxis = { stroke: "#8a9199", grid, ticks: grid, size: 50,
    values: (u, vals) => vals.map((v) => (v === null ? "" : shortNumber(v))) };
  function shortNumber(v) {
    const a = Math.abs(v);
    if (a >= 1e9) return (v / 1e9).toFixed(1) + "G";
    if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (a >= 1e5) return (v / 1e3).toFixed(0) + "k";
    if (a >= 1e3) return (v / 1e3).toFixed(1) + "k";
    return Number.isInteger(v) ? String(v) : v.toFixed(1);
  }
  // A chart: `lines()` returns [{label, color, values}] from ui.hist; made again only when its
  // lines change (an instance joins), otherwise fed new data.
  function chart(container, title, lines) {
    const box = el("div", { class: "chart" }, el("h3", { text: title }));
    container.append(box);
    const c = { title, box, lines, plot: null, labels: "" };
    ui.charts.push(c);
    return c;
  }
  function draw(c) {
    if (!c.box.isConnected) { ui.charts.splice(ui.charts.indexOf(c), 1); if (c.plot) c.plot.destroy(); return; }
    const lines = c.lines();
    const labels = lines.map((l) => l.label + l.color).join("|");
    const data = [ui.hist.times, ...lines.map((l) => l.values)];
    if (c.plot && labels === c.labels) { c.plot.setData(data); return; }
    if (c.plot) c.plot.destroy();
    c.labels = labels;
    const width = Math.max(200, c.box.clientWidth - 10);
    c.plot = new uPlot({
      width, height: HEIGHT, legend: { show: true, live: false }, cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [xAxis, yAxis],
      series: [{ label: "time", value: (u, v) => (v === null ? "—" : clock(v)) },
        ...lines.map((l) => ({ label: l.label, stroke: l.color, width: 1.5, spanGaps: false,
          points: { show: false }, value: (u, v) => (v === null ? "—" : shortNumber(v)) }))],
    }, data, c.box);
  }
  window.addEventListener("resize", () => {
    for (const c of ui.charts) if (c.plot) c.plot.setSize({ width: Math.max(200, c.box.clientWidth - 10), height: HEIGHT });
  });
  const metric = (series, m) => (series && series[m]) || new Array(ui.hist.times.length).fill(null);
  function poolCharts(name, container) {
    const hp = () => ui.hist.pools[name] || { pool: {}, instances: {} };
    const perInstance = (m) => () => Object.entries(hp().instances).map(([addr, s]) =>
      ({ label: addr, color: colorOf(name, addr), values: metric(s, m) }));
    const two = (s, a, la, b, lb) => () => [{ label: la, color: "#59c2ff", values: metric(s(), a) },
      { label: lb, color: "#f07178", values: metric(s(), b) }];
    const pool = () => hp().pool;
    chart(container, "requests/s by instance", perInstance("requests_per_s"));
    chart(container, "connections by instance", perInstance("connections"));
    chart(container, "latency (ms)", two(pool, "p50_ms", "p50", "p99_ms", "p99"));
    chart(container, "errors/s by class", two(pool, "responses_4xx_per_s", "4xx", "responses_5xx_per_s", "5xx"));
    chart(container, "failed attempts/s", two(pool, "failures_per_s", "failed attempts", "retries_per_s", "retries"));
    chart(container, "bytes/s", two(pool, "bytes_in_per_s", "in", "bytes_out_per_s", "out"));
  }
  function instanceCharts(name, address, container) {
    const s = () => (ui.hist.pools[name] || { instances: {} }).instances[address];
    const two = (a, la, b, lb) => () => [{ label: la, color: "#59c2ff", values: metric(s(), a) },
      { label: lb, color: "#f07178", values: metric(s(), b) }];
    chart(container, "requests/s", () => [{ label: "requests/s", color: colorOf(name, address), values: metric(s(), "requests_per_s") }]);
    chart(container, "latency (ms)", two("p50_ms", "p50", "p99_ms", "p99"));
    chart(container, "errors/s by class", two("responses_4xx_per_s", "4xx", "responses_5xx_per_s", "5xx"));
    chart(container, "failed attempts/s", two("failures_per_s", "failed attempts", "retries_per_s", "retries"));
    chart(container, "bytes/s", two("bytes_in_per_s", "in", "bytes_out_per_s", "out"));
  }

  // --- pools and instances: made once, updated in place ----------------------------------------------
  const COLUMNS = ["instance", "version", "state", "for", "weight", "conns", "req/s", "requests", "in / out",
    "failed", "retried", "last check", "cause", ""];
  function makePool(doc) {
    const section = el("section", { "data-pool": doc.name });
    const title = el("h2", {}, doc.name + " ", el("small"));
    const facts = el("div", { class: "facts" });
    const charts = el("div", { class: "charts" });
    const head = el("tr", {}, ...COLUMNS.map((c) => el("th", { text: c })));
    const total = el("tr", { class: "total" }, ...COLUMNS.map(() => el("td")));
    total.cells[0].textContent = "total";
    const table = el("table", {}, el("thead", {}, head), el("tbody", {}, total));
    section.append(title, facts, charts, el("div", { class: "table" }, table));
    $("#pools").append(section);
    const p = { name: doc.name, section, title, facts, table, total, rows: new Map() };
    poolCharts(doc.name, charts);
    return p;
  }
  function button(act, pool, address) {
    return el("button", { type: "button", "data-act": act, "data-pool": pool, "data-address": address, text: act });
  }
  function makeRow(p, inst) {
    const tr = el("tr", { class: "inst", tabindex: "0", "data-address": inst.address });
    const cells = COLUMNS.map(() => el("td"));
    cells[12].className = cells[11].className = "text";
    const name = el("span");
    cells[0].append(el("span", { class: "swatch", style: "background:" + colorOf(p.name, inst.address) }), name);
    const badge = el("span", { class: "state" });
    cells[2].append(badge);
    const buttons = ["drain", "enable", "maint"].map((a) => button(a, p.name, inst.address));
    cells[13].append(...buttons.flatMap((b, i) => (i ? [" ", b] : [b])));
    tr.append(...cells);
    const row = { tr, cells, name, badge, buttons, detail: null };
    tr.addEventListener("click", (ev) => { if (!ev.target.closest("button")) toggleDetail(p, inst.address); });
    tr.addEventListener("keydown", (ev) => {
      if ((ev.key === "Enter" || ev.key === " ") && ev.target === tr) { ev.preventDefault(); toggleDetail(p, inst.address); }
    });
    return row;
  }
  function toggleDetail(p, address) {
    const row = p.rows.get(address);
    if (row.detail) {
      row.detail.tr.remove();
      row.detail = null;
      row.tr.classList.remove("open");
      return;
    }
    const facts = el("div", { class: "facts" }), charts = el("div", { class: "charts" });
    const events = el("ul", { class: "events" });
    const wrap = el("div", { class: "wrap" }, facts, charts, el("div", { class: "muted", text: "events" }), events);
    const td = el("td", { colspan: String(COLUMNS.length) }, wrap);
    const tr = el("tr", { class: "detail" }, td);
    row.tr.after(tr);
    row.tr.classList.add("open");
    row.detail = { tr, facts, events, recorded: -1 };
    instanceCharts(p.name, address, charts);
    for (const c of ui.charts) if (charts.contains(c.box)) draw(c);
    updateDetail(p, address);
  }
  function allowed(inst) {
    // What each action can do in this state (balancing/transitions.py): enable does nothing to
    // up, slow-start or down; drain and maint nothing to an instance already so.
    return { drain: inst.state !== "draining" && inst.state !== "maint", maint: inst.state !== "maint",
      enable: inst.state === "draining" || inst.state === "maint" };
  }
  function updateRow(p, row, inst) {
    const c = row.cells, h = inst.health || {};
    set(row.name, inst.address);
    set(c[1], inst.version || (inst.meta && inst.meta.version) || "—");
    set(row.badge, inst.state);
    if (row.badge.className !== "state " + inst.state) row.badge.className = "state " + inst.state;
    set(c[3], duration(inst.in_state_s));
    set(c[4], inst.effective_weight === inst.weight ? String(inst.weight) : `${inst.weight} (${inst.effective_weight.toFixed(2)})`);
    set(c[5], String(inst.connections));
    set(c[6], inst.iops.toFixed(1));
    set(c[7], String(inst.requests));
    set(c[8], bytes(inst.bytes_in) + " / " + bytes(inst.bytes_out));
    set(c[9], String(inst.failures));
    set(c[10], String(inst.retries));
    const check = h.last_check === undefined ? "—" : (h.healthy === false ? "failing: " : "") + (h.last_check || "—");
    set(c[11], check);
    c[11].title = check;
    set(c[12], h.cause || "—");
    c[12].title = h.cause || "";
    const ok = allowed(inst);
    for (const b of row.buttons) {
      const off = !ok[b.dataset.act];
      if (b.disabled !== off) b.disabled = off;
    }
  }
  function updatePools(doc) {
    const seen = new Set();
    for (const pd of doc.pools) {
      seen.add(pd.name);
      ui.docs.set(pd.name, pd);
      const p = ui.pools.get(pd.name) || ui.pools.set(pd.name, makePool(pd)).get(pd.name);
      set(p.title.lastChild, pd.scheduler + (pd.slow_start ? ", slow start " + pd.slow_start + " s" : "") +
        ", " + pd.instances.filter((i) => SERVING.has(i.state)).length + " of " + pd.instances.length + " serving");
      renderFacts(p.facts, poolFacts(pd));
      const addresses = new Set();
      for (const inst of pd.instances) {
        addresses.add(inst.address);
        let row = p.rows.get(inst.address);
        if (!row) {
          row = makeRow(p, inst);
          p.rows.set(inst.address, row);
          p.total.before(row.tr);
        }
        updateRow(p, row, inst);
      }
      for (const [addr, row] of p.rows) {
        if (addresses.has(addr)) continue;
        if (row.detail) row.detail.tr.remove();
        row.tr.remove();
        p.rows.delete(addr);
      }
      const t = pd.totals, cells = p.total.cells;
      set(cells[5], String(t.connections)); set(cells[6], t.iops.toFixed(1)); set(cells[7], String(t.requests));
      set(cells[8], bytes(t.bytes_in) + " / " + bytes(t.bytes_out)); set(cells[9], String(t.failures));
      set(cells[10], String(t.retries));
    }
    for (const [name, p] of ui.pools) if (!seen.has(name)) { p.section.remove(); ui.pools.delete(name); ui.docs.delete(name); }
    $("#empty").hidden = doc.pools.length > 0;
  }
  function eventItem(e) {
    const when = new Date(e.time * 1000).toLocaleTimeString();
    const what = e.old === null ? "joined as " + e.new : e.new === null ? "left (was " + e.old + ")" : e.old + " → " + e.new;
    return el("li", {}, el("time", { text: when }), el("span", { class: "kind kind-" + e.kind, text: e.kind }),
      e.pool + " " + e.address + ": " + what + " ", el("span", { class: "muted", text: "(" + e.cause + ")" }));
  }
  async function updateDetail(p, address) {
    const row = p.rows.get(address), pd = ui.docs.get(p.name);
    if (!row || !row.detail || !pd) return;
    const inst = pd.instances.find((i) => i.address === address);
    if (!inst) return;
    const pairs = [["origin", inst.origin], ["ramp", scalar(inst.ramp)]];
    for (const [k, v] of Object.entries(inst.meta || {})) pairs.push(["meta." + k, v]);
    for (const [k, v] of Object.entries(inst)) if (!BASE_INSTANCE.has(k)) flatten(k + ".", v, pairs, pairs.length + 8);
    renderFacts(row.detail.facts, pairs);
    const q = new URLSearchParams({ pool: p.name, instance: address, limit: "20" });
    const doc = await call("GET", "/api/events?" + q);
    if (row.detail && doc.recorded !== row.detail.recorded) {
      row.detail.recorded = doc.recorded;
      row.detail.events.replaceChildren(...(doc.events.length ? doc.events.map(eventItem) : [el("li", { class: "muted", text: "no state changes yet" })]));
    }
  }
  async function updateEvents() {
    const doc = await call("GET", "/api/events?limit=30");
    if (doc.recorded === ui.eventsRecorded) return;
    ui.eventsRecorded = doc.recorded;
    $("#events").replaceChildren(...(doc.events.length ? doc.events.map(eventItem) : [el("li", { class: "muted", text: "no state changes yet" })]));
  }

  // --- actions ---------------------------------------------------------------------------------
  function confirmLast(text) {
    const dialog = $("#confirm");
    set($("#confirm-text"), text);
    dialog.returnValue = "";
    dialog.showModal();
    $("#confirm-cancel").focus();
    return new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true }));
  }
  document.addEventListener("click", async (ev) => {
    const b = ev.target.closest("button[data-act]");
    if (!b || b.disabled) return;
    const { act, pool, address } = b.dataset;
    const pd = ui.docs.get(pool);
    if ((act === "drain" || act === "maint") && pd) {
      const serving = pd.instances.filter((i) => SERVING.has(i.state));
      if (serving.length === 1 && serving[0].address === address) {
        const ok = await confirmLast(`${address} is the last instance serving pool ${pool}: ` +
          `after ${act === "drain" ? "draining" : "maint"} no instance takes new work. ${act} it anyway?`);
        if (!ok) { status("not changed: " + act + " " + address + " cancelled"); return; }
      }
    }
    try {
      await call("POST", `/api/pools/${encodeURIComponent(pool)}/instances/${encodeURIComponent(address)}/${act}`);
      status(`${act}: ${pool} ${address}`);
      await tick();
    } catch (e) {
      if (e instanceof Unauthorized) signIn(e.message); else status("error: " + e.message, true);
    }
  });

  // --- the loop --------------------------------------------------------------------------------
  async function tick() {
    if (ui.signedOut || ui.busy) return;
    ui.busy = true;
    try {
      const last = ui.hist.times.length ? ui.hist.times[ui.hist.times.length - 1] : null;
      const [pools, hist] = await Promise.all([
        call("GET", "/api/pools"), call("GET", "/api/history" + (last === null ? "" : "?since=" + last)),
      ]);
      updatePools(pools);
      merge(hist);
      for (const c of [...ui.charts]) draw(c);
      if (ui.ticks++ % 2 === 0) await updateEvents();
      for (const p of ui.pools.values()) for (const [addr, row] of p.rows) if (row.detail) await updateDetail(p, addr);
      status("live · " + new Date().toLocaleTimeString());
    } catch (e) {
      if (e instanceof Unauthorized) signIn(e.message); else status("error: " + e.message, true);
    } finally {
      ui.busy = false;
    }
  }
  tick();
  setInterval(tick, 1000);
})();
