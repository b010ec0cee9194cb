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
    for (const c of children.flat()) {
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

  function fmtTime(rfc3339) {
    if (!rfc3339) return "–";
    const d = new Date(rfc3339);
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
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

  class ApiError extends Error {}

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

  async function api(path, retry = true) {
    const headers = { Accept: "application/json" };
    if (state.token) headers.Authorization = "Bearer " + state.token;
    const resp = await fetch(path, { headers, cache: "no-store" });
    if (resp.status === 401) {
      if (retry && (await askToken())) return api(path, false);
      throw new ApiError("the API needs the admin token: open this page with ?token=…");
    }
    const body = await resp.json().catch(() => null);
    if (!resp.ok) {
      throw new ApiError((body && body.error) || `${path}: HTTP ${resp.status}`);
    }
    return body;
  }

  // ------------------------------------------------------------ refresh

  async function refresh() {
    clearTimeout(state.timer);
    const generation = ++state.generation;
    const qs = new URLSearchParams({ sort: state.sort, limit: "25" });
    if (state.window) qs.set("window", state.window);
    const [queries, slow, nplus, pools, insight] = await Promise.allSettled([
      api("api/queries?" + qs),
      api("api/slow?limit=50"),
      api("api/n-plus-one"),
      api("api/pools"),
      api("api/insight"),
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
    take(insight, renderCounters);
    // Markers only decorate the latency chart: a failure leaves it bare.
    try {
      state.markers = (await api("api/markers")).markers || [];
    } catch (_) {
      state.markers = [];
    }

    if (state.selected) {
      try {
        renderDetail(await api("api/queries/" + encodeURIComponent(state.selected)));
      } catch (e) {
        if (state.pinned) errors.push(e.message);
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
      status.textContent = (state.paused ? "Paused · updated " : "Live · updated ") + new Date().toLocaleTimeString();
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
    if (!changed("detail", d)) return;
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
    $("percentiles").replaceChildren(percentileSvg(d.recent || [], state.markers || []));

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
    let t1 = Math.max(Date.now(), ...pts.map(endOf));
    let t0 = Math.min(...pts.map(startOf));
    if (t1 - t0 < 5 * 60000) t0 = t1 - 5 * 60000;

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
      const when = new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
      const anchor = x(t) > W - M.right - 20 ? "end" : "middle";
      svg.append(
        s("line", { x1: x(t), x2: x(t), y1: M.top + ph, y2: M.top + ph + 4, class: "axis" }),
        s("text", { x: x(t), y: H - M.bottom + 17, class: "tick", "text-anchor": anchor }, when)
      );
    }
    svg.append(s("line", { x1: M.left, x2: W - M.right, y1: M.top + ph, y2: M.top + ph, class: "axis" }));

    // Before/after markers on the time axis (DDL, new version, manual).
    for (const m of markers) {
      const t = new Date(m.at).getTime();
      if (!(t >= t0 && t <= t1)) continue;
      svg.append(
        s("line", { x1: x(t), x2: x(t), y1: M.top, y2: M.top + ph, class: "marker" },
          s("title", null, `${m.kind} marker #${m.id}: ${m.name} · ${fmtTime(m.at)}`))
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
    svg.append(s("rect", { x: lx, y: 4, width: 12, height: 8, class: "calls" }), s("text", { x: lx + 16, y: 12, class: "legend" }, "calls"));
    return svg;
  }

  // ------------------------------------------------------------ N+1

  function renderNPlusOne(body) {
    const rows = body.detections || [];
    if (!changed("nplus", rows)) return;
    $("nplus-count").textContent = rows.length ? String(rows.length) : "";
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
              h("span", { class: "tag " + (d.kind === "n_plus_one" ? "bad" : "warn") }, d.kind === "n_plus_one" ? "N+1" : "repeated"),
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
    if (!changed("pools", pools)) return;
    const tbody = $("pools").tBodies[0];
    tbody.replaceChildren(
      ...pools.map((p) => {
        const pct = Math.round(p.utilization * 100);
        const level = pct >= 90 ? "bad" : pct >= 70 ? "warn" : "ok";
        const meter = h("span", { class: "meter " + level, role: "img", "aria-label": `${pct}% of ${p.pool_size} connections active` }, h("span", null));
        meter.firstChild.style.width = Math.min(100, pct) + "%";
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

  // ------------------------------------------------------------ counters

  function renderCounters(c) {
    if (!changed("counters", c)) return;
    const item = (label, value, title) => h("div", { title }, h("dt", null, label), h("dd", null, value));
    $("counters").replaceChildren(
      item("fingerprints", `${fmtInt(c.fingerprints)} / ${fmtInt(c.max_fingerprints)}`, `${fmtInt(c.fingerprint_evictions)} evicted`),
      item("slow events", fmtInt(c.slow_events), `${fmtInt(c.slow_events_dropped)} dropped`),
      item("N+1", fmtInt(c.detections), `${fmtInt(c.detections_dropped)} dropped`)
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
    $("pause").addEventListener("click", (e) => {
      state.paused = !state.paused;
      e.target.setAttribute("aria-pressed", String(state.paused));
      e.target.textContent = state.paused ? "Resume" : "Pause";
      refresh();
    });
    refresh();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
