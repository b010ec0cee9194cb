// Loads pgvigil's web dashboard in Debian's headless chromium (driven by
// playwright-core, which downloads no browser), waits until the N+1
// detection, the top queries and the charts are drawn, checks that sorting
// by a column header works, saves a full-page screenshot and prints what is
// on screen as one JSON object on stdout.
//
//   node tests/e2e/dashboard.mjs <dashboard url> <screenshot.png>
//
// Needs /usr/bin/chromium (apt-get install chromium) and
// `npm ci --prefix tests/e2e`; scripts/ensure-browser.sh does both.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const WAIT_MS = 20000;

const [url, screenshot] = process.argv.slice(2);
if (!url || !screenshot) {
  console.error("usage: node dashboard.mjs <dashboard url> <screenshot.png>");
  process.exit(2);
}

const profile = mkdtempSync(join(tmpdir(), "pgvigil-chromium-"));
const result = {
  url: new URL(url).origin + new URL(url).pathname, // never print the token
  screenshot,
  consoleErrors: [],
  pageErrors: [],
  failedRequests: [],
  foreignRequests: [],
};

let context;
let page;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      // --user-data-dir: the fresh profile passed as the first argument.
    ],
    viewport: { width: 1440, height: 1000 },
    deviceScaleFactor: 1,
    colorScheme: "light",
    timeout: 30000,
  });
  page = context.pages()[0] || (await context.newPage());
  const origin = new URL(url).origin;
  page.on("console", (m) => {
    if (m.type() === "error") result.consoleErrors.push(m.text());
  });
  page.on("pageerror", (e) => result.pageErrors.push(String(e)));
  page.on("request", (r) => {
    if (!r.url().startsWith(origin)) result.foreignRequests.push(r.url());
  });
  page.on("requestfailed", (r) => result.failedRequests.push(`${r.url()}: ${r.failure()?.errorText}`));
  page.on("dialog", (d) => {
    // A token prompt means the page did not get the token from the URL.
    result.pageErrors.push(`unexpected dialog: ${d.message()}`);
    d.dismiss();
  });

  await page.goto(url, { waitUntil: "load", timeout: WAIT_MS });
  await page.waitForSelector("#nplus .detection", { state: "visible", timeout: WAIT_MS });
  await page.waitForSelector("#queries tbody tr", { state: "visible", timeout: WAIT_MS });
  await page.waitForSelector("#histogram svg rect.bar", { timeout: WAIT_MS });
  await page.waitForSelector("#percentiles svg circle", { timeout: WAIT_MS });
  await page.waitForSelector("#pools tbody tr td", { timeout: WAIT_MS });

  // Sorting: the Calls header, then back to Total.
  await page.click('#queries th[data-sort="calls"] button');
  await page.waitForSelector('#queries th[data-sort="calls"][aria-sort="descending"]', { timeout: WAIT_MS });
  result.topByCalls = (await page.locator("#queries tbody tr td.q button").first().innerText()).trim();
  await page.click('#queries th[data-sort="total_time"] button');
  await page.waitForSelector('#queries th[data-sort="total_time"][aria-sort="descending"]', { timeout: WAIT_MS });
  // Let one more refresh (every 2 s) land, so the screenshot shows a live page.
  await page.waitForTimeout(2500);

  const texts = (sel) => page.locator(sel).evaluateAll((els) => els.map((e) => e.innerText.trim()));
  result.title = await page.title();
  result.status = (await page.locator("#status").innerText()).trim();
  result.queries = await texts("#queries tbody tr td.q button");
  result.sortedBy = await page.locator("#queries th[aria-sort]").getAttribute("data-sort");
  result.detections = await page.locator("#nplus .detection").evaluateAll((els) =>
    els.map((e) => ({
      query: e.querySelector(".sql-block")?.innerText.trim(),
      parent: e.querySelector("pre.sql")?.innerText.trim() ?? null,
      suggestion: e.querySelector(".suggestion")?.innerText.trim(),
    }))
  );
  result.nplusVisible = await page.locator("#nplus .detection").first().isVisible();
  result.topQueryVisible = await page.locator("#queries tbody tr").first().isVisible();
  result.detailQuery = (await page.locator("#detail-sql").innerText()).trim();
  result.histogramBars = await page.locator("#histogram svg rect.bar").count();
  result.percentilePoints = await page.locator("#percentiles svg circle").count();
  result.markerLines = await page.locator("#percentiles svg line.marker").count();
  result.pools = await texts("#pools tbody tr");
  result.slowEvents = await page.locator("#slow tbody tr").count();
  result.bodyText = await page.locator("body").innerText();

  await page.screenshot({ path: screenshot, fullPage: true });
  result.ok = true;
} catch (e) {
  result.ok = false;
  result.error = String(e && e.stack ? e.stack : e);
  // What the page looked like when it failed, to see why.
  if (page) await page.screenshot({ path: screenshot, fullPage: true }).catch(() => {});
  if (page) result.bodyText = await page.locator("body").innerText().catch(() => "");
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}

console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
