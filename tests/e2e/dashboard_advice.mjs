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
// Needs what lib.mjs needs; scripts/ensure-browser.sh installs it.

import { inChromium, WAIT_MS } from "./lib.mjs";

const [url, screenshot, markerName] = process.argv.slice(2);
if (!url || !screenshot || !markerName) {
  console.error("usage: node dashboard_advice.mjs <dashboard url> <screenshot.png> <marker name>");
  process.exit(2);
}

// The Copy button uses the Clipboard API; reading it back needs the read
// permission too.
const permissions = ["clipboard-read", "clipboard-write"];

await inChromium({ url, screenshot, permissions }, async (page, result) => {
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
  }
});
