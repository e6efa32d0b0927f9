// deployment-agent dashboard: plain browser JavaScript, no build step, no CDN.
//
// Feeds: the compat WebSocket /ws (the queue, pushed after every rebuild),
// GET /queue (tick, desired, running, and per container the balancer's traffic
// and the worker's limits — fetched after each push, throttled), GET /balancer
// (the application's address and the balancer's state, polled),
// GET /history (desired/running over time, once at load) and GET /events
// (the decision ledger, polled). Everything is rendered with textContent and
// SVG attributes, never innerHTML, so container names cannot inject markup.
"use strict";

(function () {
  const SPARK_POINTS = 60;      // score samples kept per container, client side
  const HISTORY_POINTS = 720;   // desired/running points kept for the chart
  const EVENTS_LIMIT = 25;
  const EVENTS_EVERY_MS = 3000;
  const STATUS_EVERY_MS = 5000; // fallback when no push arrives
  const BALANCER_EVERY_MS = 5000;
  const SVG_NS = "http://www.w3.org/2000/svg";

  const state = {
    queue: [],
    sparks: new Map(),   // name -> [score|null, ...]
    history: [],         // [{time, desired, running}]
    lastTick: null,
    updates: 0,
    traffic: {},         // name -> what the balancer saw last tick (GET /queue)
    limits: {},          // name -> {cpus, memory}
  };

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }

  const fmt = (x, digits) => (typeof x === "number" && isFinite(x) ? x.toFixed(digits) : "–");
  const ms = (seconds) => (typeof seconds === "number" && isFinite(seconds) ? `${(seconds * 1000).toFixed(0)} ms` : "–");
  function bytes(n) {
    if (typeof n !== "number" || !isFinite(n)) return null;
    for (const [unit, size] of [["GiB", 1024 ** 3], ["MiB", 1024 ** 2], ["KiB", 1024]]) {
      if (n >= size) return `${+(n / size).toFixed(1)} ${unit}`;
    }
    return `${n} B`;
  }
  function limits(l) {
    if (!l) return "–";
    const parts = [];
    if (typeof l.cpus === "number") parts.push(`${+l.cpus.toFixed(2)} CPU`);
    const mem = bytes(l.memory);
    if (mem) parts.push(mem);
    return parts.length ? parts.join(" · ") : "none";
  }
  const clock = (epoch) => (typeof epoch === "number" ? new Date(epoch * 1000).toLocaleTimeString() : "–");

  // ------------------------------------------------------------------ queue

  function onQueue(queue) {
    state.queue = Array.isArray(queue) ? queue : [];
    state.updates += 1;
    const present = new Set();
    for (const item of state.queue) {
      present.add(item.dns_name);
      const series = state.sparks.get(item.dns_name) || [];
      series.push(typeof item.score === "number" ? item.score : null);
      if (series.length > SPARK_POINTS) series.splice(0, series.length - SPARK_POINTS);
      state.sparks.set(item.dns_name, series);
    }
    for (const name of [...state.sparks.keys()]) if (!present.has(name)) state.sparks.delete(name);
    renderQueue();
    document.body.dataset.updates = String(state.updates);
    document.body.dataset.state = "live";
    $("updated").textContent = new Date().toLocaleTimeString();
    scheduleStatus();
    scheduleEvents(1000);
  }

  function sparkline(series) {
    const w = 140, h = 26;
    const box = svg("svg", { class: "spark", viewBox: `0 0 ${w} ${h}`, preserveAspectRatio: "none" });
    box.appendChild(svg("line", { x1: 0, x2: w, y1: h - 1, y2: h - 1 }));
    const pts = [];
    const step = w / Math.max(1, SPARK_POINTS - 1);
    const offset = SPARK_POINTS - series.length;
    series.forEach((v, i) => {
      if (v === null) return;
      const y = h - 1 - (Math.max(0, Math.min(100, v)) / 100) * (h - 2);
      pts.push(`${((offset + i) * step).toFixed(1)},${y.toFixed(1)}`);
    });
    box.appendChild(svg("polyline", { points: pts.join(" ") }));
    return box;
  }

  function renderQueue() {
    const body = $("queue").tBodies[0];
    const rows = state.queue.map((item, i) => {
      const cat = String(item.utilization_category || "INIT");
      const tr = el("tr", { "data-name": item.dns_name, "data-category": cat, class: cat });
      tr.appendChild(el("td", { class: "num" }, i + 1));
      tr.appendChild(el("td", { class: "name" }, item.dns_name));
      const c = el("td");
      c.appendChild(el("span", { class: `cat ${cat}` }, cat));
      tr.appendChild(c);
      tr.appendChild(el("td", { class: "num score" }, fmt(item.score, 1)));
      const weight = typeof item.weight === "number" ? `${(item.weight * 100).toFixed(1)} %` : "–";
      tr.appendChild(el("td", { class: "num weight" }, weight));
      const s = el("td", { class: "spark" });
      s.appendChild(sparkline(state.sparks.get(item.dns_name) || []));
      tr.appendChild(s);
      const t = state.traffic[item.dns_name];
      tr.appendChild(el("td", { class: "num rate" }, t ? fmt(t.rate, 1) : "–"));
      tr.appendChild(el("td", { class: "num inflight" }, t ? t.in_flight : "–"));
      tr.appendChild(el("td", { class: "num response" }, t ? ms(t.response_time) : "–"));
      const errors = t ? t.responses_5xx : null;
      tr.appendChild(el("td", { class: `num errors${errors ? " some" : ""}` }, errors ?? "–"));
      tr.appendChild(el("td", { class: "limits" }, limits(state.limits[item.dns_name])));
      const addr = item.address ? `${item.address}${item.port ? ":" + item.port : ""}` : "–";
      tr.appendChild(el("td", { class: "addr" }, addr));
      return tr;
    });
    body.replaceChildren(...rows);
    $("queue-empty").hidden = rows.length > 0;
  }

  // ------------------------------------------------------------------ counts

  async function getJSON(path) {
    const response = await fetch(path, { cache: "no-store", headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
    return response.json();
  }

  let statusBusy = false, statusAgain = false;
  function scheduleStatus() {
    if (statusBusy) { statusAgain = true; return; }
    statusBusy = true;
    refreshStatus().finally(() => {
      statusBusy = false;
      if (statusAgain) { statusAgain = false; setTimeout(scheduleStatus, 250); }
    });
  }

  async function refreshStatus() {
    try {
      const s = await getJSON("/queue");
      $("tick").textContent = s.tick;
      $("desired").textContent = s.desired;
      $("running").textContent = s.running;
      state.traffic = s.traffic && typeof s.traffic === "object" ? s.traffic : {};
      state.limits = s.limits && typeof s.limits === "object" ? s.limits : {};
      renderQueue();
      document.body.dataset.tick = String(s.tick);
      if (s.tick !== state.lastTick) {
        state.lastTick = s.tick;
        const t = typeof s.time === "number" && s.time > 0 ? s.time : Date.now() / 1000;
        const last = state.history[state.history.length - 1];
        if (!last || t > last.time) addPoint({ time: t, desired: s.desired, running: s.running });
        else if (last && (last.desired !== s.desired || last.running !== s.running)) {
          addPoint({ time: last.time + 1e-3, desired: s.desired, running: s.running });
        }
      }
    } catch (err) {
      console.warn(err);
    }
  }

  function addPoint(point) {
    state.history.push(point);
    if (state.history.length > HISTORY_POINTS) state.history.splice(0, state.history.length - HISTORY_POINTS);
    renderCounts();
  }

  async function loadHistory() {
    try {
      const body = await getJSON("/history");
      const points = (body.points || []).filter((p) => typeof p.time === "number");
      // Keep anything pushed meanwhile that is newer than the server's history.
      const newest = points.length ? points[points.length - 1].time : -Infinity;
      state.history = points.concat(state.history.filter((p) => p.time > newest)).slice(-HISTORY_POINTS);
      renderCounts();
    } catch (err) {
      console.warn(err);
    }
  }

  function renderCounts() {
    const chart = $("counts");
    const W = 640, H = 170, L = 28, R = 8, T = 8, B = 20;
    const pts = state.history;
    const nodes = [];
    const top = Math.max(1, ...pts.map((p) => Math.max(p.desired, p.running))) + 1;
    const y = (v) => T + (H - T - B) * (1 - v / top);
    nodes.push(svg("line", { class: "axis", x1: L, x2: W - R, y1: y(0), y2: y(0) }));
    for (const v of [0, Math.ceil(top / 2), top]) {
      const label = svg("text", { class: "label", x: 2, y: y(v) + 3 });
      label.textContent = String(v);
      nodes.push(label);
    }
    if (pts.length) {
      const t0 = pts[0].time, t1 = Math.max(pts[pts.length - 1].time, t0 + 1);
      const x = (t) => L + (W - L - R) * ((t - t0) / (t1 - t0));
      for (const key of ["desired", "running"]) {
        const coords = [];
        pts.forEach((p, i) => {
          if (i > 0) coords.push(`${x(p.time).toFixed(1)},${y(pts[i - 1][key]).toFixed(1)}`); // step
          coords.push(`${x(p.time).toFixed(1)},${y(p[key]).toFixed(1)}`);
        });
        if (pts.length === 1) coords.push(`${(W - R).toFixed(1)},${y(pts[0][key]).toFixed(1)}`);
        nodes.push(svg("polyline", { class: key, points: coords.join(" ") }));
      }
      const from = svg("text", { class: "label", x: L, y: H - 4 });
      from.textContent = clock(t0);
      const to = svg("text", { class: "label", x: W - R - 60, y: H - 4 });
      to.textContent = clock(pts[pts.length - 1].time);
      nodes.push(from, to);
    }
    chart.replaceChildren(...nodes);
    chart.dataset.points = String(pts.length);
  }

  // ------------------------------------------------------------------ events

  let eventsTimer = null;
  function scheduleEvents(delay) {
    if (eventsTimer !== null) return;
    eventsTimer = setTimeout(async () => {
      eventsTimer = null;
      await refreshEvents();
    }, delay);
  }

  async function refreshEvents() {
    try {
      const page = await getJSON(`/events?limit=${EVENTS_LIMIT}`);
      const rows = (page.events || []).map((e) => {
        const d = e.data && typeof e.data === "object" ? e.data : {};
        const tr = el("tr", { "data-id": e.id, "data-kind": e.kind });
        tr.appendChild(el("td", {}, clock(e.ts)));
        tr.appendChild(el("td", {}, e.kind));
        tr.appendChild(el("td", {}, d.action ?? ""));
        tr.appendChild(el("td", { class: "reason" }, d.reason ?? ""));
        const msg = d.message ?? JSON.stringify(d);
        tr.appendChild(el("td", { class: "msg" }, String(msg).slice(0, 300)));
        return tr;
      });
      $("events").tBodies[0].replaceChildren(...rows);
      $("events-empty").hidden = rows.length > 0;
    } catch (err) {
      console.warn(err);
    }
  }

  // ------------------------------------------------------------------ balancer

  async function refreshBalancer() {
    try {
      const b = await getJSON("/balancer");
      const box = $("application");
      box.hidden = !b.enabled;
      if (!b.enabled) return;
      const link = $("application-url");
      const where = b.application || `backend ${b.backend} of the HAProxy at ${b.socket}`;
      link.textContent = where;
      if (b.application) link.setAttribute("href", b.application);
      else link.removeAttribute("href");
      const pill = $("balancer");
      pill.textContent = b.reachable ? `${b.kind} ${b.mode}` : `${b.kind} unreachable`;
      pill.className = b.reachable ? "pill on" : "pill off";
      pill.title = b.last_error || `${Object.keys(b.servers || {}).length} server(s)`;
      document.body.dataset.balancer = b.reachable ? "up" : "down";
    } catch (err) {
      console.warn(err);
    }
  }

  // ------------------------------------------------------------------ feed

  let backoff = 500;
  function connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}/ws`);
    ws.onopen = () => {
      backoff = 500;
      $("live").textContent = "live";
      $("live").className = "pill on";
    };
    ws.onmessage = (event) => {
      try {
        onQueue(JSON.parse(event.data));
      } catch (err) {
        console.warn("bad queue message", err);
      }
    };
    ws.onclose = () => {
      $("live").textContent = "reconnecting…";
      $("live").className = "pill off";
      document.body.dataset.state = "reconnecting";
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 10000);
    };
  }

  function start() {
    renderCounts();
    loadHistory();
    refreshEvents();
    refreshBalancer();
    connect();
    setInterval(scheduleStatus, STATUS_EVERY_MS);
    setInterval(refreshBalancer, BALANCER_EVERY_MS);
    setInterval(() => scheduleEvents(0), EVENTS_EVERY_MS);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
