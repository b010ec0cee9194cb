// Loads pgvigil's web dashboard in Debian's headless chromium (driven by
// playwright-core, which downloads no browser), waits until the N+1
// detection, the top queries and the charts are drawn, checks that sorting
// by a column header works, saves a full-page screenshot and prints what is
// on screen as one JSON object on stdout.
//
//   node tests/e2e/dashboard.mjs <dashboard url> <screenshot.png>
//
// Needs what lib.mjs needs; scripts/ensure-browser.sh installs it.

import { inChromium, WAIT_MS } from "./lib.mjs";

const [url, screenshot] = process.argv.slice(2);
if (!url || !screenshot) {
  console.error("usage: node dashboard.mjs <dashboard url> <screenshot.png>");
  process.exit(2);
}

await inChromium({ url, screenshot }, async (page, result) => {
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
  result.markerLines = await page.locator("#percentiles svg g.event").count();
  result.pools = await texts("#pools tbody tr");
  result.slowEvents = await page.locator("#slow tbody tr").count();
  result.bodyText = await page.locator("body").innerText();

  await page.screenshot({ path: screenshot, fullPage: true });
});
