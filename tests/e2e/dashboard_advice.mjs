// Loads pgvigil's web dashboard in Debian's headless chromium (driven by
// playwright-core) and checks the advisor's panels: the index advice with
// its DDL and Copy button (what lands on the clipboard), the database
// health panel's cache hit ratio, the marker on the query detail's
// percentile chart and the marker's before/after once chosen, and the
// query's plan section. Saves a full-page screenshot and prints what is on
// screen as one JSON object on stdout.
//
//   node tests/e2e/dashboard_advice.mjs <dashboard url> <screenshot.png> <marker name>
//   node tests/e2e/dashboard_advice.mjs <dashboard url> <screenshot.png> --advisor-off
//
// With --advisor-off it checks instead that a pgvigil without the advisor
// gets panels that say so while the rest of the page works.
//
// Needs /usr/bin/chromium (apt-get install chromium) and
// `npm ci --prefix tests/e2e`; scripts/ensure-browser.sh does both.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const WAIT_MS = 20000;
// The plan endpoint answers 404 until a query is planned, and chromium
// logs that as a console error although the page shows "no plan yet".
const ADVISOR_PATH = /\/api\/(advice|health|markers|regressions)\b|\/api\/queries\/[0-9a-f]+\/plan\b/;

const [url, screenshot, markerName] = process.argv.slice(2);
if (!url || !screenshot || !markerName) {
  console.error("usage: node dashboard_advice.mjs <dashboard url> <screenshot.png> <marker name>");
  process.exit(2);
}

const profile = mkdtempSync(join(tmpdir(), "pgvigil-chromium-"));
const origin = new URL(url).origin;
const result = {
  url: origin + new URL(url).pathname, // never print a token
  screenshot,
  consoleErrors: [],
  advisorMisses: [],
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
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1440, height: 1000 },
    deviceScaleFactor: 1,
    colorScheme: "light",
    timeout: 30000,
  });
  // The Copy button uses the Clipboard API; reading it back needs the
  // read permission too.
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin });
  page = context.pages()[0] || (await context.newPage());
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    const where = m.location() && m.location().url ? m.location().url : "";
    if (/status of (404|503)/.test(m.text()) && ADVISOR_PATH.test(where)) result.advisorMisses.push(`${where}: ${m.text()}`);
    else result.consoleErrors.push(m.text());
  });
  page.on("pageerror", (e) => result.pageErrors.push(String(e)));
  page.on("request", (r) => {
    if (!r.url().startsWith(origin)) result.foreignRequests.push(r.url());
  });
  page.on("requestfailed", (r) => result.failedRequests.push(`${r.url()}: ${r.failure()?.errorText}`));
  page.on("dialog", (d) => {
    result.pageErrors.push(`unexpected dialog: ${d.message()}`);
    d.dismiss();
  });

  await page.goto(url, { waitUntil: "load", timeout: WAIT_MS });

  if (markerName === "--advisor-off") {
    await page.waitForSelector("#queries tbody tr", { state: "visible", timeout: WAIT_MS });
    await page.waitForFunction(() => /not available/.test(document.querySelector("#advice").innerText), null, { timeout: WAIT_MS });
    await page.waitForFunction(() => /not available/.test(document.querySelector("#health").innerText), null, { timeout: WAIT_MS });
    await page.waitForFunction(() => document.querySelector("#detail-plan").innerText.trim() !== "No plan yet.", null, { timeout: WAIT_MS });
    // One more refresh: nothing turns into an error later.
    await page.waitForTimeout(2500);
    result.advice = (await page.locator("#advice").innerText()).trim();
    result.health = (await page.locator("#health").innerText()).trim();
    result.markers = (await page.locator("#markers").innerText()).trim();
    result.plan = (await page.locator("#detail-plan").innerText()).trim();
    result.refreshDisabled = await page.locator("#advice-refresh").isDisabled();
    result.queries = await page.locator("#queries tbody tr td.q button").evaluateAll((els) => els.map((e) => e.innerText.trim()));
    result.percentilePoints = await page.locator("#percentiles svg circle").count();
    result.status = (await page.locator("#status").innerText()).trim();
    await page.screenshot({ path: screenshot, fullPage: true });
    result.ok = true;
  } else {
    // Advice.
    const item = page.locator("#advice .advice-item.kind-create_index").first();
    await item.waitFor({ state: "visible", timeout: WAIT_MS });
    result.advice = await page.locator("#advice .advice-item").evaluateAll((els) =>
      els.map((e) => ({
        kind: e.querySelector(".tag")?.innerText.trim(),
        table: e.querySelector(".adv-table")?.innerText.trim(),
        columns: e.querySelector(".adv-columns")?.innerText.trim() ?? null,
        method: e.querySelector(".method")?.innerText.trim(),
        ddl: e.querySelector("pre.ddl")?.innerText.trim(),
        helps: [...e.querySelectorAll(".helps li")].map((li) => li.innerText.trim()),
        text: e.innerText.trim(),
      }))
    );
    result.adviceDdl = (await item.locator("pre.ddl").innerText()).trim();
    await item.locator("button.copy").click();
    await page.waitForFunction(
      () => {
        const b = document.querySelector("#advice .advice-item.kind-create_index button.copy");
        return b && b.textContent !== "Copy";
      },
      null,
      { timeout: WAIT_MS }
    );
    result.copyLabel = (await item.locator("button.copy").innerText()).trim();
    result.clipboard = await page.evaluate(() => navigator.clipboard.readText()).catch((e) => `(unreadable: ${e})`);

    // Where the Clipboard API is missing (plain HTTP to a remote host),
    // Copy selects the DDL for Ctrl+C instead.
    await page.waitForFunction(() => document.querySelector("#advice .advice-item.kind-create_index button.copy").textContent === "Copy", null, { timeout: WAIT_MS });
    await page.evaluate(() => Object.defineProperty(navigator, "clipboard", { value: undefined, configurable: true }));
    await item.locator("button.copy").click();
    result.fallbackLabel = (await item.locator("button.copy").innerText()).trim();
    result.selection = await page.evaluate(() => String(window.getSelection()));

    // Health.
    await page.waitForSelector("#cache-hit-ratio dd", { timeout: WAIT_MS });
    result.cacheHitRatio = (await page.locator("#cache-hit-ratio dd").innerText()).trim();
    result.cacheHitClass = await page.locator("#cache-hit-ratio").getAttribute("class");
    result.healthText = (await page.locator("#health").innerText()).trim();

    // The marker on the percentile chart, then its before/after.
    await page.waitForSelector("#percentiles svg g.event", { timeout: WAIT_MS });
    result.chartMarkers = await page.locator("#percentiles svg g.event title").evaluateAll((els) => els.map((e) => e.textContent));
    const marker = page.locator("#markers button.marker-name", { hasText: markerName }).first();
    await marker.click();
    await page.waitForSelector("#markers .marker-detail[data-loaded]", { timeout: WAIT_MS });
    result.markerDetail = (await page.locator("#markers .marker-detail").innerText()).trim();
    result.markerSelectedOnChart = await page.locator("#percentiles svg g.event.selected").count();
    result.regressions = (await page.locator("#regressions").innerText()).trim();

    // The detail's plan section, after one more refresh.
    await page.waitForTimeout(2500);
    result.detailQuery = (await page.locator("#detail-sql").innerText()).trim();
    result.plan = (await page.locator("#detail-plan").innerText()).trim();
    result.status = (await page.locator("#status").innerText()).trim();

    // The Refresh advice button: disabled while the advisor runs.
    await page.click("#advice-refresh");
    result.refreshDisabledWhileRunning = await page.locator("#advice-refresh").isDisabled();
    await page.waitForFunction(() => !document.querySelector("#advice-refresh").disabled, null, { timeout: WAIT_MS * 2 });
    result.adviceNote = (await page.locator("#advice-note").innerText()).trim();

    // From the top: the sticky header stays where it belongs.
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: screenshot, fullPage: true });
    result.ok = true;
  }
} catch (e) {
  result.ok = false;
  result.error = String(e && e.stack ? e.stack : e);
  if (page) await page.screenshot({ path: screenshot, fullPage: true }).catch(() => {});
  if (page) result.bodyText = await page.locator("body").innerText().catch(() => "");
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}

console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
