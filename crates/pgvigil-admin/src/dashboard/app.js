// pgvigil dashboard: reads the admin JSON API every 2 seconds and renders
// it with plain DOM calls and hand-drawn SVG. No libraries, no network
// access beyond this listener. Query texts are untrusted: they only ever
// reach the page through textContent and attribute values.
"use strict";

(function () {
  const REFRESH_MS = 2000;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const TOKEN_KEY = "pgvigil.token";
  const COLORS = { p50: "#2563eb", p95: "#d97706", p99: "#dc2626" };

  const state = {
    token: null,
    sort: "total_time",
    window: "",
    selected: null, // fingerprint shown in the detail section
    pinned: false, // chosen by the user (else: the top query)
    paused: false,
    timer: null,
    markers: [], // from /api/markers, drawn on the percentile chart
    marker: null, // id of the marker whose before/after is shown
    plan: null, // {fp, at, result}: the latest plan answer, kept a while
    healthDb: "", // database of the health panel ("" = the API's default)
    adviceRunning: false,
    adviceNote: null, // outcome of the last "Refresh advice"
    queryText: new Map(), // fingerprint -> query text, for the advice panel
    generation: 0, // the latest refresh; older ones only render
    last: {}, // JSON text of the latest render per section
  };

  // ------------------------------------------------------------ helpers

  const $ = (id) => document.getElementById(id);

  // h("td", {class: "num"}, "12", child...) builds an element; strings
  // become text nodes, so nothing is ever parsed as markup.
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }

  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG_NS, tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }

  function setAttrs(el, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
  }

  function append(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }

  function fmtMs(ms) {
    if (ms === null || ms === undefined || Number.isNaN(ms)) return "–";
    if (ms >= 60000) return (ms / 60000).toFixed(ms >= 600000 ? 0 : 1) + " min";
    if (ms >= 1000) return (ms / 1000).toFixed(ms >= 10000 ? 1 : 2) + " s";
    if (ms >= 100) return ms.toFixed(0) + " ms";
    if (ms >= 10) return ms.toFixed(1) + " ms";
    if (ms >= 1) return ms.toFixed(2) + " ms";
    return ms.toFixed(3) + " ms";
  }

  // Short axis labels: 500µs, 2ms, 1.5s.
  function fmtTick(ms) {
    if (ms === 0) return "0";
    const trim = (x) => String(Number(x.toPrecision(3)));
    if (ms >= 1000) return trim(ms / 1000) + "s";
    if (ms >= 1) return trim(ms) + "ms";
    return trim(ms * 1000) + "µs";
  }

  const fmtInt = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));

  // One clock everywhere on the page: UTC, 24-hour, as the API's
  // timestamps, the logs and `pgvigil top` have it. The browser's locale
  // would give a 12-hour clock in some places and 24-hour in others.
  const pad2 = (n) => String(n).padStart(2, "0");

  function fmtClock(date, seconds = true) {
    const d = date instanceof Date ? date : new Date(date);
    if (Number.isNaN(d.getTime())) return "–";
    const hm = `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}`;
    return seconds ? `${hm}:${pad2(d.getUTCSeconds())}` : hm;
  }

  function fmtTime(rfc3339) {
    if (!rfc3339) return "–";
    return fmtClock(new Date(rfc3339));
  }

  function fmtAgo(rfc3339) {
    const secs = Math.max(0, Math.round((Date.now() - new Date(rfc3339).getTime()) / 1000));
    if (secs < 60) return secs + " s ago";
    if (secs < 3600) return Math.round(secs / 60) + " min ago";
    return Math.round(secs / 3600) + " h ago";
  }

  // Re-renders a section only when its data changed, so hovering, focus
  // and text selection survive refreshes that bring nothing new.
  function changed(key, data) {
    const text = JSON.stringify(data);
    if (state.last[key] === text) return false;
    state.last[key] = text;
    return true;
  }

  // Keeps keyboard focus on the same logical control across a re-render.
  function keepFocus(render) {
    const active = document.activeElement;
    const key = active && active.dataset ? active.dataset.focus : null;
    render();
    if (key) {
      const again = document.querySelector(`[data-focus="${CSS.escape(key)}"]`);
      if (again) again.focus();
    }
  }

  // ------------------------------------------------------------ the API

  // `status` lets a panel tell "this pgvigil does not do that" (404, 503)
  // from a real failure.
  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status || 0;
    }
  }

  function initToken() {
    const url = new URL(window.location.href);
    const fromUrl = url.searchParams.get("token");
    if (fromUrl) {
      state.token = fromUrl;
      try {
        sessionStorage.setItem(TOKEN_KEY, fromUrl);
      } catch (_) {
        /* storage may be disabled */
      }
      // Keep the token out of the address bar and history.
      url.searchParams.delete("token");
      history.replaceState(null, "", url.pathname + url.search + url.hash);
      return;
    }
    try {
      state.token = sessionStorage.getItem(TOKEN_KEY);
    } catch (_) {
      state.token = null;
    }
  }

  let prompting = null;

  function askToken() {
    if (!prompting) {
      prompting = new Promise((resolve) => {
        const given = window.prompt("pgvigil admin token (sent as Authorization: Bearer):", "");
        if (given) {
          state.token = given.trim();
          try {
            sessionStorage.setItem(TOKEN_KEY, state.token);
          } catch (_) {
            /* storage may be disabled */
          }
        }
        resolve(Boolean(given));
        setTimeout(() => (prompting = null), 0);
      });
    }
    return prompting;
  }

  async function api(path, { method = "GET", retry = true } = {}) {
    const headers = { Accept: "application/json" };
    if (state.token) headers.Authorization = "Bearer " + state.token;
    // The listener takes a POST only with this header, which a cross-site
    // form cannot send.
    if (method !== "GET") headers["X-Pgvigil"] = "1";
    const resp = await fetch(path, { method, headers, cache: "no-store" });
    if (resp.status === 401) {
      if (retry && (await askToken())) return api(path, { method, retry: false });
      throw new ApiError("the API needs the admin token: open this page with ?token=…", 401);
    }
    const body = await resp.json().catch(() => null);
    if (!resp.ok) {
      throw new ApiError((body && body.error) || `${path}: HTTP ${resp.status}`, resp.status);
    }
    return body;
  }

  // For the advisor's panels: a pgvigil without the advisor (or with
  // analytics off) answers 404 or 503, which is a state to show in the
  // panel, not an error of the page.
  const unavailable = (r) => r.status === "rejected" && r.reason instanceof ApiError && (r.reason.status === 404 || r.reason.status === 503);
  const reasonText = (r) => (r.reason && r.reason.message ? r.reason.message : String(r.reason));

  // ------------------------------------------------------------ refresh

  async function refresh() {
    clearTimeout(state.timer);
    const generation = ++state.generation;
    const qs = new URLSearchParams({ sort: state.sort, limit: "25" });
    if (state.window) qs.set("window", state.window);
    const healthQs = state.healthDb ? "?" + new URLSearchParams({ database: state.healthDb }) : "";
    const [queries, slow, nplus, pools, insight, advice, health, markers, marker, regressions, latency] = await Promise.allSettled([
      api("api/queries?" + qs),
      api("api/slow?limit=50"),
      api("api/n-plus-one"),
      api("api/pools"),
      api("api/insight"),
      api("api/advice"),
      api("api/health" + healthQs),
      api("api/markers"),
      state.marker === null ? Promise.resolve(null) : api("api/markers/" + encodeURIComponent(state.marker)),
      api("api/regressions?limit=10"),
      api("api/latency"),
    ]);
    const errors = [];
    const take = (r, render) => {
      if (r.status === "fulfilled") render(r.value);
      else errors.push(r.reason && r.reason.message ? r.reason.message : String(r.reason));
    };
    take(queries, renderQueries);
    take(slow, renderSlow);
    take(nplus, renderNPlusOne);
    take(pools, renderPools);
    take(insight, (c) => renderCounters(c, nplus.status === "fulfilled" ? nplus.value.detections || [] : null));
    // The advisor's panels show their own state (off, no sample yet,
    // failed) and never turn the page's status into an error.
    renderAdvice(advice, health);
    renderHealth(health);
    renderMarkers(markers, marker);
    renderLatency(latency);
    renderRegressions(regressions);

    if (state.selected) {
      const fp = state.selected;
      const [detail, plan] = await Promise.allSettled([api("api/queries/" + encodeURIComponent(fp)), planFor(fp)]);
      if (detail.status === "fulfilled") {
        renderDetail(detail.value);
        renderPlan(plan.status === "fulfilled" ? plan.value : plan);
      } else {
        if (state.pinned) errors.push(reasonText(detail));
        renderDetail(null);
      }
    } else {
      renderDetail(null);
    }

    const status = $("status");
    if (errors.length) {
      status.textContent = [...new Set(errors)].join(" · ");
      status.className = "status error";
    } else {
      status.textContent = (state.paused ? "Frozen · updated " : "Live · updated ") + fmtClock(new Date()) + " UTC";
      status.className = state.paused ? "status paused" : "status ok";
    }
    if (generation === state.generation && !state.paused) {
      clearTimeout(state.timer);
      state.timer = setTimeout(refresh, REFRESH_MS);
    }
  }

  function select(fp) {
    state.selected = fp;
    state.pinned = true;
    state.last.queries = null; // redraw the highlight
    refresh();
    $("detail").scrollIntoView({ behavior: "smooth", block: "start" });
  }

  // ------------------------------------------------------------ top queries

  function renderQueries(body) {
    const rows = body.queries || [];
    for (const r of rows) state.queryText.set(r.fingerprint, r.query);
    if (!state.pinned) state.selected = rows.length ? rows[0].fingerprint : null;
    for (const th of document.querySelectorAll("#queries th[data-sort]")) {
      if (th.dataset.sort === state.sort) th.setAttribute("aria-sort", "descending");
      else th.removeAttribute("aria-sort");
    }
    if (!changed("queries", [rows, state.selected])) return;
    $("queries-empty").hidden = rows.length > 0;
    const maxTotal = Math.max(1e-9, ...rows.map((r) => r.total_ms));
    keepFocus(() => {
      const tbody = $("queries").tBodies[0];
      tbody.replaceChildren(
        ...rows.map((r) => {
          const selected = r.fingerprint === state.selected;
          const lint = (r.lint || []).map((l) => h("span", { class: "tag warn", title: l.message }, l.code));
          return h(
            "tr",
            { class: selected ? "selected" : null },
            h(
              "td",
              { class: "q" },
              h(
                "button",
                {
                  type: "button",
                  class: "link sql-inline",
                  title: r.query,
                  "aria-current": selected ? "true" : null,
                  "data-focus": "q-" + r.fingerprint,
                  onclick: () => select(r.fingerprint),
                },
                r.query
              ),
              h("div", { class: "sub" }, h("span", { class: "tag" }, r.statement || "?"), (r.tables || []).join(", "), lint)
            ),
            h("td", { class: "num" }, fmtInt(r.calls)),
            h(
              "td",
              { class: "num total" },
              fmtMs(r.total_ms),
              h("span", { class: "share", "aria-hidden": "true" }, h("span", { "data-w": (100 * r.total_ms) / maxTotal }))
            ),
            h("td", { class: "num" }, fmtMs(r.mean_ms)),
            h("td", { class: "num" }, fmtMs(r.p95_ms)),
            h("td", { class: r.errors > 0 ? "num bad" : "num" }, fmtInt(r.errors)),
            h("td", { class: "num" }, fmtInt(r.rows))
          );
        })
      );
      // Widths through the CSSOM (the page's CSP forbids style attributes).
      for (const bar of tbody.querySelectorAll("[data-w]")) bar.style.width = bar.dataset.w + "%";
    });
  }

  // ------------------------------------------------------------ detail

  function renderDetail(d) {
    if (!changed("detail", [d, state.markers])) return;
    $("detail-empty").hidden = Boolean(d);
    $("detail-body").hidden = !d;
    $("detail-fp").textContent = d ? d.fingerprint : "";
    if (!d) {
      $("detail-empty").textContent = state.selected
        ? "No statistics for this fingerprint any more."
        : "Choose a query above.";
      return;
    }
    $("detail-sql").textContent = d.query;
    const stat = (label, value) => [h("div", null, h("dt", null, label), h("dd", null, value))];
    $("detail-stats").replaceChildren(
      ...stat("calls", fmtInt(d.calls)),
      ...stat("total", fmtMs(d.total_ms)),
      ...stat("mean", fmtMs(d.mean_ms)),
      ...stat("min", fmtMs(d.min_ms)),
      ...stat("max", fmtMs(d.max_ms)),
      ...stat("p50", fmtMs(d.p50_ms)),
      ...stat("p95", fmtMs(d.p95_ms)),
      ...stat("p99", fmtMs(d.p99_ms)),
      ...stat("rows", fmtInt(d.rows)),
      ...stat("errors", fmtInt(d.errors)),
      ...stat("last seen", fmtAgo(d.last_seen))
    );
    $("histogram").replaceChildren(histogramSvg(d));
    $("percentiles").replaceChildren(percentileSvg(d.recent || [], state.markers));

    const slow = d.slow_events || [];
    $("detail-slow").replaceChildren(
      slow.length
        ? table(
            ["At", "Duration", "Rule", "Application"],
            slow.map((e) => [fmtTime(e.at), fmtMs(e.duration_ms), e.rule, e.application_name || "–"]),
            [false, true, false, false]
          )
        : h("p", { class: "empty" }, "None.")
    );
    const callers = d.callers || [];
    $("detail-callers").replaceChildren(
      callers.length
        ? h(
            "ul",
            { class: "plain" },
            callers.map((c) => h("li", null, `${c.user}@${c.database}`, c.application_name ? h("span", { class: "muted" }, ` · ${c.application_name}`) : null))
          )
        : h("p", { class: "empty" }, "–")
    );
    const errs = Object.entries(d.errors_by_sqlstate || {});
    $("detail-errors").replaceChildren(
      errs.length
        ? h("ul", { class: "plain" }, errs.map(([code, n]) => h("li", null, h("code", null, code), ` × ${fmtInt(n)}`)))
        : h("p", { class: "empty" }, "None.")
    );
  }

  // `text in backticks` becomes <code>, the rest stays plain text.
  function withCode(text) {
    return text.split("`").map((part, i) => (i % 2 ? h("code", null, part) : part));
  }

  function table(headers, rows, numeric) {
    return h(
      "table",
      { class: "data compact" },
      h("thead", null, h("tr", null, headers.map((t, i) => h("th", { scope: "col", class: numeric[i] ? "num" : null }, t)))),
      h("tbody", null, rows.map((cells) => h("tr", null, cells.map((c, i) => h("td", { class: numeric[i] ? "num" : null }, c)))))
    );
  }

  // ------------------------------------------------------------ charts

  const W = 560;
  const H = 230;
  const M = { top: 22, right: 14, bottom: 30, left: 48 };

  // 1-2-5 ticks from 0 to at least max, about n of them.
  function niceTicks(max, n) {
    if (!(max > 0)) return [0, 1];
    const raw = max / n;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((x) => x >= raw);
    const ticks = [];
    for (let v = 0; v < max + step * 0.999; v += step) ticks.push(Number(v.toPrecision(12)));
    return ticks;
  }

  function chartFrame(label) {
    return s("svg", {
      viewBox: `0 0 ${W} ${H}`,
      role: "img",
      "aria-label": label,
      class: "svgchart",
    }, s("title", null, label));
  }

  function yAxis(svg, ticks, y, fmt) {
    for (const t of ticks) {
      svg.append(
        s("line", { x1: M.left, x2: W - M.right, y1: y(t), y2: y(t), class: "grid" }),
        s("text", { x: M.left - 6, y: y(t) + 4, class: "tick", "text-anchor": "end" }, fmt(t))
      );
    }
  }

  function histogramSvg(d) {
    const buckets = (d.histogram || []).filter((b) => b.count > 0);
    const total = buckets.reduce((a, b) => a + b.count, 0);
    const label = `Latency histogram of ${fmtInt(total)} executions: p50 ${fmtMs(d.p50_ms)}, p95 ${fmtMs(d.p95_ms)}, p99 ${fmtMs(d.p99_ms)}`;
    const svg = chartFrame(label);
    if (!buckets.length) {
      svg.append(s("text", { x: W / 2, y: H / 2, class: "nodata", "text-anchor": "middle" }, "no executions yet"));
      return svg;
    }
    // Log-scaled x axis, regrouped into at most 48 bins.
    const floor = 0.001;
    let lo = Math.log10(Math.max(floor, Math.min(...buckets.map((b) => b.ge_ms))));
    let hi = Math.log10(Math.max(floor * 2, Math.max(...buckets.map((b) => b.le_ms))));
    if (hi - lo < 1) {
      const mid = (hi + lo) / 2;
      lo = mid - 0.5;
      hi = mid + 0.5;
    }
    const nbins = 48;
    const bins = new Array(nbins).fill(0);
    // Each bucket's count is spread over the bins it overlaps (in log
    // space), so bins of different widths do not alias into spikes.
    const pos = (ms) => ((Math.log10(Math.max(floor, ms)) - lo) / (hi - lo)) * nbins;
    for (const b of buckets) {
      const a = Math.max(0, pos(b.ge_ms));
      const z = Math.min(nbins, Math.max(a + 1e-9, pos(b.le_ms)));
      for (let i = Math.floor(a); i < Math.min(nbins, Math.ceil(z)); i++) {
        const overlap = Math.min(z, i + 1) - Math.max(a, i);
        bins[i] += (b.count * overlap) / (z - a);
      }
    }
    const maxCount = Math.max(...bins);

    const pw = W - M.left - M.right;
    const ph = H - M.top - M.bottom;
    const x = (ms) => M.left + ((Math.log10(ms) - lo) / (hi - lo)) * pw;
    const yTicks = niceTicks(Math.max(maxCount, 4), 4); // whole counts
    const yMax = yTicks[yTicks.length - 1];
    const y = (n) => M.top + ph - (n / yMax) * ph;
    yAxis(svg, yTicks, y, (t) => fmtInt(t));

    const bw = pw / nbins;
    bins.forEach((n, i) => {
      if (n < maxCount / 500) return; // invisible anyway
      const from = Math.pow(10, lo + (i / nbins) * (hi - lo));
      const to = Math.pow(10, lo + ((i + 1) / nbins) * (hi - lo));
      svg.append(
        s("rect", { x: M.left + i * bw + 0.5, y: y(n), width: Math.max(1, bw - 1), height: M.top + ph - y(n), class: "bar" },
          s("title", null, `${fmtMs(from)} – ${fmtMs(to)}: about ${fmtInt(Math.round(n))} executions`))
      );
    });

    // x ticks at 1-2-5 steps, fewer when the range spans many decades.
    const decades = hi - lo;
    const steps = decades > 3 ? [1] : decades > 1.5 ? [1, 3] : [1, 2, 5];
    for (let e = Math.floor(lo); e <= Math.ceil(hi); e++) {
      for (const m of steps) {
        const v = m * Math.pow(10, e);
        const lv = Math.log10(v);
        if (lv < lo || lv > hi) continue;
        svg.append(
          s("line", { x1: x(v), x2: x(v), y1: M.top + ph, y2: M.top + ph + 4, class: "axis" }),
          s("text", { x: x(v), y: H - M.bottom + 17, class: "tick", "text-anchor": "middle" }, fmtTick(v))
        );
      }
    }
    svg.append(s("line", { x1: M.left, x2: W - M.right, y1: M.top + ph, y2: M.top + ph, class: "axis" }));

    // Percentile markers; labels nudged apart when they would overlap.
    let lastLabelX = -Infinity;
    for (const [key, v] of [["p50", d.p50_ms], ["p95", d.p95_ms], ["p99", d.p99_ms]]) {
      if (!(v > 0)) continue;
      const px = Math.min(W - M.right, Math.max(M.left, x(v)));
      const lx = Math.max(px, lastLabelX + 30);
      lastLabelX = lx;
      svg.append(
        s("line", { x1: px, x2: px, y1: M.top, y2: M.top + ph, class: "marker", stroke: COLORS[key] }),
        s("text", { x: Math.min(lx, W - M.right - 12), y: M.top - 7, class: "marker-label", fill: COLORS[key], "text-anchor": "middle" }, key)
      );
    }
    return svg;
  }

  function percentileSvg(recent, markers) {
    const pts = recent.filter((r) => r.calls > 0);
    const label = pts.length
      ? `p50, p95 and p99 over ${pts.length} recent windows; latest p95 ${fmtMs(pts[pts.length - 1].p95_ms)}`
      : "No executions in the last hour";
    const svg = chartFrame(label);
    if (!pts.length) {
      svg.append(s("text", { x: W / 2, y: H / 2, class: "nodata", "text-anchor": "middle" }, "no executions in the last hour"));
      return svg;
    }
    const startOf = (r) => new Date(r.start).getTime();
    const endOf = (r) => startOf(r) + r.minutes * 60000;
    // The axis spans the samples and nothing else: stretching it to a
    // fixed length would draw empty time before the first one, as if
    // nothing had run then rather than nothing been recorded.
    const t0 = Math.min(...pts.map(startOf));
    const t1 = Math.max(...pts.map(endOf));
    svg.setAttribute("data-t0", String(t0));
    svg.setAttribute("data-t1", String(t1));
    svg.setAttribute("data-first", String(startOf(pts[0])));

    const pw = W - M.left - M.right;
    const ph = H - M.top - M.bottom;
    const x = (t) => M.left + ((t - t0) / (t1 - t0)) * pw;
    const yTicks = niceTicks(Math.max(...pts.map((r) => r.p99_ms)), 4);
    const yMax = yTicks[yTicks.length - 1] || 1;
    const y = (ms) => M.top + ph - (ms / yMax) * ph;
    yAxis(svg, yTicks, y, fmtTick);

    // Calls per window as faint bars along the bottom quarter.
    const maxCalls = Math.max(...pts.map((r) => r.calls));
    for (const r of pts) {
      const bh = (r.calls / maxCalls) * ph * 0.25;
      svg.append(
        s("rect", { x: x(startOf(r)) + 1, y: M.top + ph - bh, width: Math.max(1, x(endOf(r)) - x(startOf(r)) - 2), height: bh, class: "calls" },
          s("title", null, `${fmtTime(r.start)}, ${r.minutes} min: ${fmtInt(r.calls)} calls`))
      );
    }

    // Time ticks: whole minutes, about 6 of them.
    const spanMin = (t1 - t0) / 60000;
    const stepMin = [1, 2, 5, 10, 15, 30, 60].find((m) => spanMin / m <= 6) || 60;
    const first = Math.ceil(t0 / (stepMin * 60000)) * stepMin * 60000;
    for (let t = first; t <= t1; t += stepMin * 60000) {
      const when = fmtClock(new Date(t), false);
      const anchor = x(t) > W - M.right - 20 ? "end" : x(t) < M.left + 20 ? "start" : "middle";
      svg.append(
        s("line", { x1: x(t), x2: x(t), y1: M.top + ph, y2: M.top + ph + 4, class: "axis" }),
        s("text", { x: x(t), y: H - M.bottom + 17, class: "tick", "text-anchor": anchor }, when)
      );
    }
    svg.append(s("line", { x1: M.left, x2: W - M.right, y1: M.top + ph, y2: M.top + ph, class: "axis" }));

    // Markers (DDL, deploys, manual) as vertical lines; the name is the
    // tooltip, a click shows the marker's before/after.
    for (const m of markers || []) {
      const t = new Date(m.at).getTime();
      if (!(t >= t0 && t <= t1)) continue;
      const mx = x(t);
      const label = `${m.name} · ${fmtTime(m.at)}`;
      svg.append(
        s(
          "g",
          {
            class: state.marker === m.id ? "event selected" : "event",
            "data-marker": m.id,
            tabindex: 0,
            role: "button",
            "aria-label": "Marker: " + label,
            onclick: () => selectMarker(m.id),
            onkeydown: (e) => {
              if (e.key === "Enter" || e.key === " ") selectMarker(m.id);
            },
          },
          s("title", null, label),
          s("line", { x1: mx, x2: mx, y1: M.top, y2: M.top + ph, class: "event-hit" }),
          s("line", { x1: mx, x2: mx, y1: M.top, y2: M.top + ph, class: "event-line" }),
          s("path", { d: `M${mx - 4},${M.top - 6} h8 l-4,6 z`, class: "event-flag" })
        )
      );
    }

    // p99 first with the largest dots, so equal values show as rings.
    const radius = { p99: 3.6, p95: 2.9, p50: 2.2 };
    for (const key of ["p99", "p95", "p50"]) {
      const coords = pts.map((r) => [x((startOf(r) + endOf(r)) / 2), y(r[key + "_ms"])]);
      if (coords.length > 1) {
        svg.append(s("polyline", { points: coords.map((c) => c.join(",")).join(" "), class: "line", stroke: COLORS[key] }));
      }
      coords.forEach(([cx, cy], i) => {
        const r = pts[i];
        svg.append(
          s("circle", { cx, cy, r: radius[key], fill: COLORS[key], class: "dot" },
            s("title", null, `${key} ${fmtMs(r[key + "_ms"])} · ${fmtTime(r.start)} (${r.minutes} min, ${fmtInt(r.calls)} calls)`))
        );
      });
    }

    // Legend, top left.
    let lx = M.left + 6;
    for (const key of ["p50", "p95", "p99"]) {
      svg.append(
        s("rect", { x: lx, y: 6, width: 12, height: 4, rx: 1, fill: COLORS[key] }),
        s("text", { x: lx + 16, y: 12, class: "legend" }, key)
      );
      lx += 52;
    }
    svg.append(s("rect", { x: lx, y: 4, width: 12, height: 8, class: "calls swatch" }), s("text", { x: lx + 16, y: 12, class: "legend" }, "calls"));
    return svg;
  }

  // ------------------------------------------------------------ N+1

  // A pattern is one (parent, repeated query) pair, a loop one run of it:
  // the header, this panel and the summary count patterns, and say how
  // many loops they add up to, so the figures never disagree.
  const loopsOf = (rows) => rows.reduce((n, d) => n + (Number(d.occurrences) || 0), 0);
  const plural = (n, one, many) => `${fmtInt(n)} ${n === 1 ? one : many}`;
  const kindTag = (d) => h("span", { class: "tag " + (d.kind === "n_plus_one" ? "bad" : "warn") }, d.kind === "n_plus_one" ? "N+1" : "repeated");

  // The panel's and the summary's badge: how many patterns, none shown as
  // nothing.
  function patternCount(id, rows) {
    $(id).textContent = rows.length ? String(rows.length) : "";
    $(id).title = plural(rows.length, "pattern", "patterns");
  }

  function renderNPlusOne(body) {
    const rows = body.detections || [];
    renderSummaryNPlus(rows);
    if (!changed("nplus", rows)) return;
    patternCount("nplus-count", rows);
    $("nplus-loops").textContent = rows.length ? plural(loopsOf(rows), "loop", "loops") + " in all" : "";
    $("nplus-empty").hidden = rows.length > 0;
    keepFocus(() => {
      $("nplus").replaceChildren(
        ...rows.map((d) =>
          h(
            "li",
            { class: "detection" },
            h(
              "div",
              { class: "det-head" },
              kindTag(d),
              h("span", null, h("strong", null, `${fmtInt(d.repeats)}×`), " per loop, ", h("strong", null, fmtInt(d.occurrences)), d.occurrences === 1 ? " loop" : " loops", ` · ${fmtMs(d.total_ms)}`),
              h("span", { class: "muted right" }, fmtAgo(d.last_seen))
            ),
            h("div", { class: "det-label" }, "Repeated query"),
            h(
              "button",
              { type: "button", class: "link sql-block", "data-focus": "n-" + d.fingerprint + "-" + d.parent_fingerprint, onclick: () => select(d.fingerprint) },
              d.query
            ),
            d.parent_query ? [h("div", { class: "det-label" }, "After parent"), h("pre", { class: "sql small" }, d.parent_query)] : null,
            h("p", { class: "suggestion" }, h("strong", null, "Suggestion: "), withCode(d.suggestion || "")),
            h("p", { class: "muted small" }, `${d.user}@${d.database}`, d.application_name ? ` · ${d.application_name}` : "")
          )
        )
      );
    });
  }

  // ------------------------------------------------------------ slow events

  function renderSlow(body) {
    const events = body.events || [];
    renderSummarySlow(events);
    if (!changed("slow", events)) return;
    $("slow-count").textContent = events.length ? String(events.length) : "";
    keepFocus(() => {
      if (!events.length) {
        $("slow").replaceChildren(h("p", { class: "empty" }, "No slow executions recorded."));
        return;
      }
      $("slow").replaceChildren(
        h(
          "table",
          { class: "data" },
          h("caption", { class: "sr-only" }, "Slow executions, newest first"),
          h(
            "thead",
            null,
            h("tr", null, h("th", { scope: "col" }, "At"), h("th", { scope: "col", class: "num" }, "Duration"), h("th", { scope: "col" }, "Rule"), h("th", { scope: "col", class: "q" }, "Query"), h("th", { scope: "col" }, "Caller"))
          ),
          h(
            "tbody",
            null,
            events.map((e, i) =>
              h(
                "tr",
                null,
                h("td", { class: "nowrap" }, fmtTime(e.at)),
                h("td", { class: "num" }, fmtMs(e.duration_ms)),
                h("td", null, h("span", { class: "tag" }, e.rule)),
                h("td", { class: "q" }, h("button", { type: "button", class: "link sql-inline", title: e.query, "data-focus": "s-" + i, onclick: () => select(e.fingerprint) }, e.query)),
                h("td", { class: "muted nowrap" }, `${e.user}@${e.database}`, e.application_name ? ` · ${e.application_name}` : "", e.client_addr ? ` · ${e.client_addr}` : "")
              )
            )
          )
        )
      );
    });
  }

  // ------------------------------------------------------------ pools

  function renderPools(body) {
    const pools = body.pools || [];
    renderSummaryPools(pools);
    if (!changed("pools", pools)) return;
    const tbody = $("pools").tBodies[0];
    tbody.replaceChildren(
      ...pools.map((p) => {
        const [pct, meter] = meterFor(p);
        return h(
          "tr",
          null,
          h("td", null, h("strong", null, p.database), h("span", { class: "muted" }, " / " + p.user)),
          h("td", null, p.pool_mode),
          h("td", { class: "num" }, fmtInt(p.active), p.overflow ? h("span", { class: "muted small" }, ` (+${p.overflow})`) : null),
          h("td", { class: "num" }, fmtInt(p.idle)),
          h("td", { class: p.waiting > 0 ? "num bad" : "num" }, fmtInt(p.waiting)),
          h("td", { class: "num" }, fmtInt(p.clients)),
          h("td", { class: "util" }, meter, h("span", { class: "pct" }, `${pct}% of ${p.pool_size}`))
        );
      })
    );
    if (!pools.length) tbody.append(h("tr", null, h("td", { colspan: 7, class: "empty" }, "No pools configured.")));
  }

  // ------------------------------------------------------------ advice

  const ADVICE_KINDS = {
    create_index: "create index",
    unused_index: "unused index",
    duplicate_index: "duplicate index",
    invalid_index: "invalid index",
    fk_without_index: "FK without index",
  };

  const fmtPct = (ratio) => (ratio === null || ratio === undefined || Number.isNaN(ratio) ? "–" : (100 * ratio).toFixed(ratio >= 0.9995 && ratio < 1 ? 2 : 1) + "%");

  function fmtBytes(n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "kB", "MB", "GB", "TB"];
    let v = Number(n);
    let u = 0;
    while (v >= 1024 && u < units.length - 1) {
      v /= 1024;
      u++;
    }
    return (u === 0 ? String(v) : v.toFixed(v >= 100 ? 0 : 1)) + " " + units[u];
  }

  const fmtCost = (c) => (c === null || c === undefined ? "–" : Number(c).toLocaleString("en-US", { maximumFractionDigits: c >= 100 ? 0 : 2 }));

  // What a panel says when its endpoint is not there or not ready.
  function panelState(el, r, what) {
    const message = reasonText(r);
    el.replaceChildren(
      unavailable(r)
        ? h("p", { class: "empty" }, `${what} not available: `, h("span", { class: "muted" }, message))
        : h("p", { class: "empty bad-text" }, `${what} could not be read: ${message}`)
    );
  }

  // Copies through the Clipboard API where the page may use it (HTTPS or
  // localhost); elsewhere selects the DDL so that Ctrl+C copies it.
  function copyDdl(button, pre) {
    const done = (text) => {
      button.textContent = text;
      setTimeout(() => (button.textContent = "Copy"), 2000);
    };
    const select = () => {
      const range = document.createRange();
      range.selectNodeContents(pre);
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      done("Selected: press Ctrl+C");
    };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(pre.textContent).then(() => done("Copied"), select);
    } else {
      select();
    }
  }

  function renderAdvice(r, health) {
    // Index hygiene also comes with each health sample; what /api/advice
    // does not list (yet) is shown from there, once per DDL.
    const sample = health.status === "fulfilled" && health.value ? health.value : null;
    const hygiene = sample ? (sample.databases ? Object.values(sample.databases) : [sample]).flatMap((d) => (d && d.hygiene) || []) : [];
    const fromApi = r.status === "fulfilled" && r.value ? r.value.advice || [] : [];
    const seen = new Set(fromApi.map((a) => a.kind + " " + a.ddl));
    const list = [...fromApi, ...hygiene.filter((a) => !seen.has(a.kind + " " + a.ddl))];
    $("advice-count").textContent = list.length ? String(list.length) : "";
    const button = $("advice-refresh");
    button.disabled = state.adviceRunning || unavailable(r);
    const note = state.adviceNote;
    if (!changed("advice", [r.status, r.status === "fulfilled" ? null : reasonText(r), list, note, state.adviceRunning, state.queryText.size])) return;
    const el = $("advice");
    $("advice-note").replaceChildren(note ? h("span", { class: note.error ? "bad-text" : "muted" }, note.text) : "");
    if (r.status !== "fulfilled" && !list.length) return panelState(el, r, "Advice is");
    if (!list.length) {
      el.replaceChildren(h("p", { class: "empty" }, "No advice: no missing or unneeded index found so far."));
      return;
    }
    keepFocus(() => {
      el.replaceChildren(h("ol", { class: "advice" }, list.map(adviceItem)));
      if (r.status !== "fulfilled") {
        const off = h("div", null);
        panelState(off, r, "Index creation advice is");
        el.prepend(...off.childNodes);
      }
    });
  }

  function adviceItem(a, i) {
    const pre = h("pre", { class: "sql ddl" }, a.ddl || "");
    const copy = h("button", { type: "button", class: "copy", "data-focus": "copy-" + i, onclick: (e) => copyDdl(e.currentTarget, pre) }, "Copy");
    const heuristic = a.method !== "hypopg";
    const figures = [];
    if (a.improvement !== null && a.improvement !== undefined) figures.push(h("span", { class: "figure good" }, `−${fmtPct(a.improvement)} cost`));
    const known = (v) => v !== null && v !== undefined;
    if (known(a.cost_before) && known(a.cost_after)) figures.push(h("span", { class: "figure" }, `cost ${fmtCost(a.cost_before)} → ${fmtCost(a.cost_after)}`));
    else if (known(a.cost_before)) figures.push(h("span", { class: "figure" }, `plan cost ${fmtCost(a.cost_before)}`));
    if (a.saved_ms_per_hour !== null && a.saved_ms_per_hour !== undefined) figures.push(h("span", { class: "figure" }, `saves ${fmtMs(a.saved_ms_per_hour)}/hour`));
    const fps = a.fingerprints || [];
    return h(
      "li",
      { class: "advice-item kind-" + a.kind },
      h(
        "div",
        { class: "det-head" },
        h("span", { class: "tag " + (a.kind === "create_index" ? "good" : "warn") }, ADVICE_KINDS[a.kind] || a.kind),
        h("strong", { class: "adv-table" }, a.table || "?"),
        a.columns && a.columns.length ? h("span", { class: "adv-columns" }, "(", a.columns.join(", "), ")") : null,
        a.database ? h("span", { class: "muted small nowrap" }, "in " + a.database) : null,
        h(
          "span",
          { class: "method right " + (heuristic ? "heuristic" : "hypopg"), title: heuristic ? "Estimated from the plan's shape; install hypopg for a cost-based check" : "Re-planned with a hypothetical index (hypopg)" },
          heuristic ? "heuristic (no hypopg)" : "hypopg"
        )
      ),
      figures.length ? h("div", { class: "figures" }, figures) : null,
      a.reason ? h("p", { class: "reason" }, withCode(a.reason)) : null,
      fps.length
        ? h(
            "div",
            { class: "helps" },
            h("div", { class: "det-label" }, fps.length === 1 ? "Helps 1 query" : `Helps ${fps.length} queries`),
            h(
              "ul",
              { class: "plain" },
              fps.map((f) => {
                const fp = typeof f === "string" ? f : f.fingerprint;
                const text = state.queryText.get(fp);
                return h(
                  "li",
                  null,
                  h("button", { type: "button", class: "link sql-inline", title: text || fp, "data-focus": `a-${i}-${fp}`, onclick: () => select(fp) }, text || fp),
                  typeof f === "object" ? h("span", { class: "muted small" }, `${fmtInt(f.calls)} calls · ${fmtMs(f.total_ms)}`) : null
                );
              })
            )
          )
        : null,
      h("div", { class: "ddl-row" }, pre, copy)
    );
  }

  async function refreshAdvice() {
    if (state.adviceRunning) return;
    state.adviceRunning = true;
    const button = $("advice-refresh");
    button.disabled = true;
    button.textContent = "Refreshing…";
    try {
      const body = await api("api/advice/refresh", { method: "POST" });
      const n = ((body && body.advice) || []).length;
      state.adviceNote = { text: `Advisor ran at ${fmtClock(new Date())} UTC: ${n} ${n === 1 ? "advice" : "pieces of advice"}.` };
    } catch (e) {
      state.adviceNote = { text: "Refresh failed: " + e.message, error: true };
    } finally {
      state.adviceRunning = false;
      button.textContent = "Refresh advice";
      refresh();
    }
  }

  // ------------------------------------------------------------ plan

  // Plans change only when the advisor re-plans; asking every refresh
  // would only repeat the same answer.
  const PLAN_EVERY_MS = 10000;

  async function planFor(fp) {
    const c = state.plan;
    if (c && c.fp === fp && Date.now() - c.at < PLAN_EVERY_MS) return c.result;
    const [result] = await Promise.allSettled([api("api/queries/" + encodeURIComponent(fp) + "/plan")]);
    state.plan = { fp, at: Date.now(), result };
    return result;
  }

  function renderPlan(r) {
    if (!changed("plan", [r.status, r.status === "fulfilled" ? r.value : reasonText(r)])) return;
    const el = $("detail-plan");
    if (r.status !== "fulfilled") {
      const message = reasonText(r);
      el.replaceChildren(
        // 404 is both "not planned yet" and "no advisor here".
        r.reason instanceof ApiError && r.reason.status === 404 && /no plan/i.test(message)
          ? h("p", { class: "empty" }, "No plan yet. ", h("span", { class: "muted" }, message))
          : h("p", { class: "empty" }, "Plan not available: ", h("span", { class: "muted" }, message))
      );
      return;
    }
    const p = r.value || {};
    const sum = p.summary || {};
    const findings = [];
    // A filter shows only in a generic plan, where it holds $n and no
    // literal of the sampled parameters.
    for (const x of sum.seq_scans || []) {
      findings.push([
        "warn",
        ["Sequential scan on ", h("code", null, x.table), `, ~${fmtInt(Math.round(x.rows))} rows`, p.analyze ? " read" : " estimated", p.generic && x.filter ? [" · filter ", h("code", null, x.filter)] : null],
      ]);
    }
    for (const x of sum.misestimates || []) {
      const factor = x.estimated_rows > 0 ? x.actual_rows / x.estimated_rows : Infinity;
      const off = factor >= 1 ? `${Number.isFinite(factor) ? Math.round(factor) : "∞"}× more` : `${Math.round(1 / factor)}× fewer`;
      findings.push(["warn", [h("code", null, x.node), `: estimated ${fmtInt(Math.round(x.estimated_rows))} rows, got ${fmtInt(Math.round(x.actual_rows))} (${off})`]]);
    }
    for (const x of sum.spills || []) findings.push(["bad", [h("code", null, x.node), x.disk_kb > 0 ? ` spilled ${fmtBytes(Math.round(x.disk_kb * 1024))} to disk` : " spilled to disk"]]);
    for (const x of sum.nested_loops || []) findings.push(["warn", [h("code", null, x.node), `: inner side ran ${fmtInt(Math.round(x.loops))} times`]]);
    const slowest = sum.slowest;
    if (slowest) {
      const own = slowest.self_ms !== null && slowest.self_ms !== undefined ? `${fmtMs(slowest.self_ms)} of its own` : slowest.self_cost !== null && slowest.self_cost !== undefined ? `cost ${fmtCost(slowest.self_cost)} of its own` : "";
      findings.push(["info", ["Slowest node: ", h("code", null, slowest.node), slowest.relation ? [" on ", h("code", null, slowest.relation)] : null, own ? ` (${own})` : ""]]);
    }
    const how = [p.generic ? "generic plan" : "with a real parameter sample", p.analyze ? "EXPLAIN ANALYZE" : "EXPLAIN"];
    el.replaceChildren(
      ...[
        h(
          "p",
          { class: "muted small" },
          `Taken ${p.taken_at ? fmtAgo(p.taken_at) : "at an unknown time"} · ${how.join(", ")} · total cost ${fmtCost(sum.total_cost)}`,
          sum.execution_ms !== null && sum.execution_ms !== undefined ? ` · ran ${fmtMs(sum.execution_ms)}` : ""
        ),
        findings.length
          ? h("ul", { class: "findings" }, findings.map(([level, parts]) => h("li", { class: level }, parts)))
          : h("p", { class: "empty" }, "Nothing stands out in this plan."),
        p.plan ? h("details", null, h("summary", null, "Plan (EXPLAIN JSON)"), h("pre", { class: "sql small plan-json" }, JSON.stringify(p.plan, null, 2))) : null,
      ].filter(Boolean)
    );
  }

  // ------------------------------------------------------------ health

  function renderHealth(r) {
    const el = $("health");
    if (!changed("health", [r.status, r.status === "fulfilled" ? r.value : reasonText(r)])) return;
    $("health-db").replaceChildren();
    if (r.status !== "fulfilled") return panelState(el, r, "Health is");
    const d = r.value || {};
    const dbs = Object.keys(d.databases || {});
    if (dbs.length > 1) {
      $("health-db").append(
        h(
          "label",
          { class: "window" },
          "Database",
          h(
            "select",
            {
              onchange: (e) => {
                state.healthDb = e.target.value;
                refresh();
              },
            },
            dbs.map((n) => h("option", { value: n, selected: n === d.database }, n))
          )
        )
      );
    }
    const ratio = (label, v, id) =>
      h(
        "div",
        { class: "ratio " + (v === null || v === undefined ? "" : v < 0.99 ? "warn" : "ok"), id, title: v !== null && v !== undefined && v < 0.99 ? "below 99%: the working set does not fit in shared_buffers" : null },
        h("dt", null, label),
        h("dd", null, fmtPct(v))
      );
    const conns = Object.entries(d.connections || {});
    const longTx = d.long_transactions || [];
    const blocked = d.blocked || [];
    const tables = (d.tables || []).slice(0, 10);
    const more = (n, what) => (n > 0 ? h("p", { class: "muted small" }, `and ${fmtInt(n)} more ${what}`) : null);
    keepFocus(() =>
      el.replaceChildren(
        h(
          "div",
          null,
          h(
            "dl",
            { class: "stats health-figures" },
            ratio("cache hit ratio", d.cache_hit_ratio, "cache-hit-ratio"),
            ratio("index hit ratio", d.index_hit_ratio, "index-hit-ratio"),
            h("div", null, h("dt", null, "database size"), h("dd", null, fmtBytes(d.database_size_bytes))),
            h("div", null, h("dt", null, "sampled"), h("dd", null, d.sampled_at ? fmtAgo(d.sampled_at) : "–"))
          ),
          h("h3", null, "Connections by state"),
          conns.length ? h("p", { class: "conns" }, conns.map(([st, n]) => h("span", { class: "chip" }, h("strong", null, fmtInt(n)), " " + st))) : h("p", { class: "empty" }, "–"),
          h("h3", null, "Long transactions"),
          longTx.length
            ? h(
                "div",
                { class: "scroll" },
                table(
                  ["PID", "User", "Application", "State", "Open for"],
                  longTx.map((t) => [String(t.pid), t.user || "–", t.application_name || "–", t.state || "–", fmtMs(1000 * t.duration_s)]),
                  [true, false, false, false, true]
                )
              )
            : h("p", { class: "empty" }, "None."),
          more(d.long_transactions_dropped, "long transactions"),
          h("h3", null, "Blocked sessions"),
          blocked.length
            ? h(
                "div",
                { class: "scroll" },
                table(
                  ["PID", "User", "Waiting", "Wait event", "Blocked by"],
                  blocked.map((b) => [
                    String(b.pid),
                    [b.user || "–", b.application_name ? h("span", { class: "muted" }, " · " + b.application_name) : null],
                    fmtMs(1000 * b.waiting_s),
                    [b.wait_event_type, b.wait_event].filter(Boolean).join(": ") || "–",
                    h("strong", { class: "bad-text" }, (b.blocked_by || []).join(", ") || "?"),
                  ]),
                  [true, false, true, false, false]
                )
              )
            : h("p", { class: "empty" }, "None."),
          more(d.blocked_dropped, "blocked sessions"),
          h("h3", null, "Tables by dead tuples"),
          tables.length
            ? h(
                "div",
                { class: "scroll" },
                table(
                  ["Table", "Live", "Dead", "Bloat", "Last autovacuum"],
                  tables.map((t) => [
                    t.table,
                    fmtInt(t.live_tuples),
                    fmtInt(t.dead_tuples),
                    h("span", { class: t.bloat_ratio >= 0.2 ? "bad-text" : null }, fmtPct(t.bloat_ratio)),
                    [t.last_autovacuum ? fmtAgo(t.last_autovacuum) : "never", t.autovacuum_due ? [" ", h("span", { class: "tag warn", title: "autovacuum is due" }, "due")] : null, t.autovacuum_enabled === false ? [" ", h("span", { class: "tag warn", title: "autovacuum is off for this table" }, "off")] : null],
                  ]),
                  [false, true, true, true, false]
                )
              )
            : h("p", { class: "empty" }, "No tables."),
          (d.errors || []).length ? h("ul", { class: "plain small bad-text" }, d.errors.map((e) => h("li", null, e))) : null
        )
      )
    );
  }

  // ------------------------------------------------------------ markers

  function selectMarker(id) {
    state.marker = state.marker === id ? null : id;
    state.last.markers = null;
    state.last.detail = null; // redraw the highlight on the chart
    refresh();
  }

  function renderMarkers(r, detail) {
    if (r.status === "fulfilled") {
      state.markers = ((r.value && r.value.markers) || []).filter((m) => m && m.at);
    } else {
      state.markers = [];
    }
    const list = [...state.markers].sort((a, b) => new Date(b.at) - new Date(a.at));
    $("markers-count").textContent = list.length ? String(list.length) : "";
    const detailKey = detail.status === "fulfilled" ? detail.value : reasonText(detail);
    if (!changed("markers", [r.status, r.status === "fulfilled" ? list : reasonText(r), state.marker, detailKey])) return;
    const el = $("markers");
    if (r.status !== "fulfilled") return panelState(el, r, "Markers are");
    if (!list.length) {
      el.replaceChildren(h("p", { class: "empty" }, "No markers yet: DDL, a new application version or POST /api/markers sets one."));
      return;
    }
    keepFocus(() =>
      el.replaceChildren(
        h(
          "ol",
          { class: "markers" },
          list.slice(0, 20).map((m) => {
            const open = state.marker === m.id;
            return h(
              "li",
              { class: open ? "open" : null },
              h(
                "button",
                { type: "button", class: "link marker-name", "aria-expanded": String(open), "data-focus": "m-" + m.id, onclick: () => selectMarker(m.id) },
                m.name
              ),
              h("span", { class: "tag" }, m.kind || "marker"),
              h("span", { class: "muted small" }, `${fmtTime(m.at)} · ${fmtAgo(m.at)}`),
              open ? markerDetail(detail) : null
            );
          })
        )
      )
    );
  }

  function markerDetail(r) {
    if (r.status !== "fulfilled" || !r.value) {
      return h("div", { class: "marker-detail" }, h("p", { class: "empty" }, r.status === "fulfilled" ? "Loading…" : "Before/after not available: " + reasonText(r)));
    }
    const m = r.value;
    const qs = m.queries || [];
    const change = (b, a) => {
      if (!(b > 0) || !(a > 0)) return "–";
      const f = a / b;
      return f >= 1 ? `×${f.toFixed(f >= 10 ? 0 : 1)} slower` : `×${(1 / f).toFixed(1 / f >= 10 ? 0 : 1)} faster`;
    };
    return h(
      "div",
      { class: "marker-detail", "data-loaded": true },
      // Green only for good news: "p95 ... fell"; a rise is a warning.
      m.summary ? h("p", { class: / rose /.test(m.summary) ? "suggestion worse" : "suggestion" }, m.summary) : null,
      qs.length
        ? h(
            "div",
            { class: "scroll" },
            table(
              ["Query", "Calls before", "p95 before", "Calls after", "p95 after", "p95 change"],
              qs.slice(0, 10).map((q) => [
                h("button", { type: "button", class: "link sql-inline", title: q.query, onclick: () => select(q.fingerprint) }, q.query),
                fmtInt(q.before && q.before.calls),
                fmtMs(q.before && q.before.p95_ms),
                fmtInt(q.after && q.after.calls),
                fmtMs(q.after && q.after.p95_ms),
                change(q.before && q.before.p95_ms, q.after && q.after.p95_ms),
              ]),
              [false, true, true, true, true, true]
            )
          )
        : h("p", { class: "empty" }, "No query ran on both sides of this marker yet.")
    );
  }

  function renderRegressions(r) {
    if (!changed("regressions", [r.status, r.status === "fulfilled" ? r.value : reasonText(r)])) return;
    const el = $("regressions");
    if (r.status !== "fulfilled") {
      // Older pgvigils have no regressions endpoint: nothing to say.
      el.replaceChildren(unavailable(r) ? "" : h("p", { class: "empty bad-text" }, "Regressions could not be read: " + reasonText(r)));
      return;
    }
    const events = (r.value && r.value.regressions) || [];
    const total = (r.value && r.value.total) || events.length;
    keepFocus(() =>
      el.replaceChildren(
        h("h3", null, total ? `Regressions (${fmtInt(total)} since start)` : "Regressions"),
        events.length
          ? h(
              "div",
              { class: "scroll" },
              table(
                ["At", "Query", "p95 now", "Baseline p95", "Factor"],
                events.map((e, i) => [
                  fmtTime(e.at),
                  h("button", { type: "button", class: "link sql-inline", title: e.query, "data-focus": "r-" + i, onclick: () => select(e.fingerprint) }, e.query),
                  fmtMs(e.window_p95_ms),
                  fmtMs(e.baseline_p95_ms),
                  h("strong", { class: "bad-text" }, `×${Number(e.factor).toFixed(1)}`),
                ]),
                [false, false, true, true, true]
              )
            )
          : h("p", { class: "empty" }, "None: no query's p95 is far above its baseline.")
      )
    );
  }

  // ------------------------------------------------------------ counters

  // `nplus`: the N+1 panel's rows (null when they could not be read), so
  // the header counts what the panel lists.
  function renderCounters(c, nplus) {
    // Two figures of the rows are shown: compare those, not every row again.
    const patterns = nplus ? nplus.length : null;
    const loops = nplus ? loopsOf(nplus) : null;
    if (!changed("counters", [c, patterns, loops])) return;
    const item = (label, value, title, id) => h("div", { title, id }, h("dt", null, label), h("dd", null, value));
    $("counters").replaceChildren(
      item("fingerprints", `${fmtInt(c.fingerprints)} / ${fmtInt(c.max_fingerprints)}`, `${fmtInt(c.fingerprint_evictions)} evicted`),
      item("slow events", fmtInt(c.slow_events), `${fmtInt(c.slow_events_dropped)} dropped`),
      item(
        "N+1 patterns",
        nplus ? fmtInt(patterns) : "–",
        nplus ? `${plural(loops, "loop", "loops")} in all; ${fmtInt(c.detections_dropped)} dropped` : null,
        "counter-nplus"
      )
    );
  }

  // ------------------------------------------------------------ summary

  // The band at the top: what needs attention, before the long tables.

  // One of the band's short lists: `items` drawn by `item`, then `after`
  // if given, or one line saying there are none.
  function renderTops(id, items, none, item, after = null) {
    const list = $(id);
    if (!items.length) {
      list.replaceChildren(h("li", { class: "empty" }, none));
      return;
    }
    keepFocus(() => list.replaceChildren(...items.map(item), ...(after ? [after] : [])));
  }

  function renderLatency(r) {
    if (!changed("latency", [r.status, r.status === "fulfilled" ? r.value : reasonText(r), state.markers])) return;
    const el = $("latency-chart");
    if (r.status !== "fulfilled") return panelState(el, r, "Latency is");
    el.replaceChildren(percentileSvg((r.value && r.value.recent) || [], state.markers));
  }

  function renderSummaryNPlus(rows) {
    const top = [...rows].sort((a, b) => b.total_ms - a.total_ms).slice(0, 4);
    if (!changed("summary-nplus", [rows.length, top])) return;
    patternCount("summary-nplus-count", rows);
    renderTops("summary-nplus-list", top, "No N+1 loops detected.", (d) =>
      h(
        "li",
        { class: "top-item" },
        h(
          "div",
          { class: "top-figures" },
          kindTag(d),
          h("strong", null, plural(d.occurrences, "loop", "loops")),
          h("span", { class: "muted" }, `${fmtInt(d.repeats)}× each · ${fmtMs(d.total_ms)}`)
        ),
        h("button", { type: "button", class: "link sql-inline", title: d.query, "data-focus": "sn-" + d.fingerprint + "-" + d.parent_fingerprint, onclick: () => select(d.fingerprint) }, d.query),
        d.parent_query ? h("span", { class: "sql-inline muted small", title: d.parent_query }, "after " + d.parent_query) : null
      )
    );
  }

  function renderSummarySlow(events) {
    // Slow executions by statement: how often, and the worst one.
    const by = new Map();
    for (const e of events) {
      const g = by.get(e.fingerprint) || { fingerprint: e.fingerprint, query: e.query, count: 0, worst: 0 };
      g.count += 1;
      g.worst = Math.max(g.worst, e.duration_ms);
      by.set(e.fingerprint, g);
    }
    const top = [...by.values()].sort((a, b) => b.count - a.count || b.worst - a.worst).slice(0, 5);
    if (!changed("summary-slow", top)) return;
    renderTops("summary-slow-list", top, "No slow executions recorded.", (g) =>
      h(
        "li",
        { class: "top-item" },
        h("div", { class: "top-figures" }, h("strong", null, `${fmtInt(g.count)}× slow`), h("span", { class: "muted" }, `worst ${fmtMs(g.worst)}`)),
        h("button", { type: "button", class: "link sql-inline", title: g.query, "data-focus": "ss-" + g.fingerprint, onclick: () => select(g.fingerprint) }, g.query)
      )
    );
  }

  function meterFor(p) {
    const pct = Math.round(p.utilization * 100);
    const level = pct >= 90 ? "bad" : pct >= 70 ? "warn" : "ok";
    const meter = h("span", { class: "meter " + level, role: "img", "aria-label": `${pct}% of ${p.pool_size} connections active` }, h("span", null));
    meter.firstChild.style.width = Math.min(100, pct) + "%";
    return [pct, meter];
  }

  function renderSummaryPools(pools) {
    if (!changed("summary-pools", pools)) return;
    const shown = [...pools].sort((a, b) => b.utilization - a.utilization || b.waiting - a.waiting).slice(0, 5);
    const more = pools.length > shown.length ? h("li", { class: "muted small" }, `and ${fmtInt(pools.length - shown.length)} more below`) : null;
    renderTops(
      "summary-pools-list",
      shown,
      "No pools configured.",
      (p) => {
        const [pct, meter] = meterFor(p);
        meter.classList.add("wide-meter");
        return h(
          "li",
          { class: "top-item pool" },
          h("div", { class: "top-figures" }, h("strong", null, p.database), h("span", { class: "muted" }, "/ " + p.user), h("span", { class: "tag" }, p.pool_mode)),
          meter,
          h(
            "div",
            { class: "small pool-figures" },
            h("span", null, `${fmtInt(p.active)} of ${fmtInt(p.pool_size)} active (${pct}%)`),
            h("span", { class: p.waiting > 0 ? "bad-text" : "muted" }, `${fmtInt(p.waiting)} waiting`),
            h("span", { class: "muted" }, plural(p.clients, "client", "clients"))
          )
        );
      },
      more
    );
  }

  // ------------------------------------------------------------ start

  function start() {
    initToken();
    for (const th of document.querySelectorAll("#queries th[data-sort]")) {
      th.querySelector("button").addEventListener("click", () => {
        state.sort = th.dataset.sort;
        state.last.queries = null;
        if (!state.pinned) state.selected = null;
        refresh();
      });
    }
    $("window").addEventListener("change", (e) => {
      state.window = e.target.value;
      refresh();
    });
    $("advice-refresh").addEventListener("click", refreshAdvice);
    $("pause").addEventListener("click", (e) => {
      state.paused = !state.paused;
      e.target.setAttribute("aria-pressed", String(state.paused));
      e.target.textContent = state.paused ? "Resume auto-refresh" : "Stop auto-refresh";
      refresh();
    });
    refresh();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
