// Loads pgvigil's web dashboard in Debian's headless chromium at a laptop's
// window size (1400x900) and reports what a person sees without scrolling:
// the summary band's geometry, the N+1 figures of the header and the
// panel, cells whose text does not fit, the clock of every time shown, the
// latency chart's time axis and what the refresh button does. Saves a
// screenshot of the window (above the fold only) and prints one JSON
// object on stdout.
//
//   node tests/e2e/dashboard_layout.mjs <dashboard url> <screenshot.png>
//
// The browser runs in a time zone far from UTC with the en-US locale
// (whose default clock is 12-hour), so a time formatted by the locale
// instead of the page's UTC 24-hour clock shows.
//
// Needs what lib.mjs needs; scripts/ensure-browser.sh installs it.

import { inChromium, WAIT_MS } from "./lib.mjs";

const WIDTH = 1400;
const HEIGHT = 900;
const REFRESH_MS = 2000;

const [url, screenshot] = process.argv.slice(2);
if (!url || !screenshot) {
  console.error("usage: node dashboard_layout.mjs <dashboard url> <screenshot.png>");
  process.exit(2);
}

// Seconds between an HH:MM:SS text and the UTC time of day now (wrapping at
// midnight), or null when the text is not a 24-hour HH:MM:SS.
function skewFromUtcNow(text) {
  const m = /(\d{2}):(\d{2}):(\d{2})/.exec(text || "");
  if (!m) return null;
  const shown = Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3]);
  const d = new Date();
  const now = d.getUTCHours() * 3600 + d.getUTCMinutes() * 60 + d.getUTCSeconds();
  const diff = Math.abs(now - shown);
  return Math.min(diff, 86400 - diff);
}

const browser = {
  url,
  screenshot,
  viewport: { width: WIDTH, height: HEIGHT },
  fullPage: false,
  locale: "en-US",
  timezoneId: "America/Los_Angeles",
};

await inChromium(browser, async (page, result) => {
  await page.waitForSelector("#summary-nplus-list .top-item", { state: "visible", timeout: WAIT_MS });
  await page.waitForSelector("#summary-slow-list .top-item", { state: "visible", timeout: WAIT_MS });
  await page.waitForSelector("#summary-pools-list .pool", { state: "visible", timeout: WAIT_MS });
  await page.waitForSelector("#latency-chart svg circle", { timeout: WAIT_MS });
  await page.waitForSelector("#nplus .detection", { timeout: WAIT_MS });
  await page.waitForSelector("#pools tbody tr td", { timeout: WAIT_MS });
  await page.waitForSelector("#slow tbody tr", { timeout: WAIT_MS });
  await page.waitForSelector("#counter-nplus", { timeout: WAIT_MS });
  await page.waitForSelector("#status.ok", { timeout: WAIT_MS });

  result.viewport = await page.evaluate(() => ({ width: window.innerWidth, height: window.innerHeight, scrollY: window.scrollY }));
  result.panels = await page.evaluate((ids) => {
    const out = {};
    for (const id of ids) {
      const el = document.getElementById(id);
      if (!el) {
        out[id] = null;
        continue;
      }
      const r = el.getBoundingClientRect();
      out[id] = {
        top: r.top,
        bottom: r.bottom,
        left: r.left,
        right: r.right,
        width: r.width,
        height: r.height,
        visible: el.checkVisibility({ opacityProperty: true, visibilityProperty: true }),
      };
    }
    return out;
  }, ["summary", "summary-latency", "summary-nplus", "summary-slow", "summary-pools", "queries"]);

  // N+1: the header's figure and the panel's, with their labels.
  result.nplus = await page.evaluate(() => {
    const counter = document.getElementById("counter-nplus");
    return {
      headerLabel: counter.querySelector("dt").innerText.trim(),
      headerValue: counter.querySelector("dd").innerText.trim(),
      headerTitle: counter.getAttribute("title") || "",
      panelTitle: document.getElementById("nplus-title").innerText.trim(),
      panelCount: document.getElementById("nplus-count").innerText.trim(),
      panelLoops: document.getElementById("nplus-loops").innerText.trim(),
      summaryTitle: document.getElementById("summary-nplus-title").innerText.trim(),
      summaryCount: document.getElementById("summary-nplus-count").innerText.trim(),
      detections: document.querySelectorAll("#nplus .detection").length,
    };
  });

  // Text that does not fit its box: the pools table's cells, its scroll
  // container, and the summary's pool entries.
  const clipped = () => page.evaluate(() => {
    const out = [];
    const check = (el, what) => {
      if (el.scrollWidth > el.clientWidth + 0.5) out.push(`${what}: "${el.innerText.trim()}" needs ${el.scrollWidth}px, has ${el.clientWidth}px`);
    };
    document.querySelectorAll("#pools td").forEach((td, i) => check(td, `#pools td ${i}`));
    document.querySelectorAll("#pools-card .scroll").forEach((el) => check(el, "#pools-card .scroll"));
    document.querySelectorAll("#summary-pools-list li, #summary-pools-list li *").forEach((el, i) => check(el, `#summary-pools-list element ${i}`));
    return out;
  });
  result.clipped = await clipped();
  result.poolCells = await page.locator("#pools tbody tr td.util").evaluateAll((els) => els.map((e) => e.innerText.trim()));
  result.summaryPools = await page.locator("#summary-pools-list li").evaluateAll((els) => els.map((e) => e.innerText.replace(/\s+/g, " ").trim()));

  // Clocks.
  result.status = (await page.locator("#status").innerText()).trim();
  result.statusSkewSeconds = skewFromUtcNow(result.status);
  result.slowTimes = await page.locator("#slow tbody tr td:first-child").evaluateAll((els) => els.map((e) => e.innerText.trim()));
  result.chartTicks = await page.locator("#latency-chart svg text.tick").evaluateAll((els) => els.map((e) => e.textContent.trim()));

  // The latency chart's time axis against its samples.
  result.chart = await page.evaluate(() => {
    const svg = document.querySelector("#latency-chart svg");
    const bars = [...svg.querySelectorAll("rect.calls:not(.swatch)")];
    return {
      t0: Number(svg.getAttribute("data-t0")),
      t1: Number(svg.getAttribute("data-t1")),
      first: Number(svg.getAttribute("data-first")),
      firstBarX: bars.length ? Math.min(...bars.map((b) => Number(b.getAttribute("x")))) : null,
      points: svg.querySelectorAll("circle").length,
    };
  });

  await page.screenshot({ path: screenshot, fullPage: false });

  // Narrower windows (two summary columns, then one) must not cut the
  // pools' figures either.
  result.clippedNarrow = {};
  for (const width of [1000, 700]) {
    await page.setViewportSize({ width, height: HEIGHT });
    await page.waitForTimeout(200);
    result.clippedNarrow[width] = await clipped();
  }
  await page.setViewportSize({ width: WIDTH, height: HEIGHT });

  // The refresh button: it stops this page's refresh, nothing else.
  const button = page.locator("#pause");
  result.refreshButton = { before: (await button.innerText()).trim() };
  await button.click();
  await page.waitForSelector("#status.paused", { timeout: WAIT_MS });
  const frozen = (await page.locator("#status").innerText()).trim();
  await page.waitForTimeout(REFRESH_MS + 1500);
  result.refreshButton.stopped = {
    label: (await button.innerText()).trim(),
    pressed: await button.getAttribute("aria-pressed"),
    status: frozen,
    statusLater: (await page.locator("#status").innerText()).trim(),
  };
  await button.click();
  await page.waitForSelector("#status.ok", { timeout: WAIT_MS });
  result.refreshButton.resumed = {
    label: (await button.innerText()).trim(),
    pressed: await button.getAttribute("aria-pressed"),
    status: (await page.locator("#status").innerText()).trim(),
  };
});
