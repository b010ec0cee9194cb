// What every dashboard script does around its own checks: Debian's headless
// chromium (driven by playwright-core, which downloads no browser) in a
// fresh profile, the page's errors collected, a screenshot and the page's
// text when a step fails, and one JSON object on stdout.
//
// Needs /usr/bin/chromium (apt-get install chromium) and
// `npm ci --prefix tests/e2e`; scripts/ensure-browser.sh does both.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
// How long any one step may wait for the page.
export const WAIT_MS = 20000;
// The advisor's endpoints answer 404/503 when the advisor is off or has
// nothing yet (no plan of a query); the page shows that in its panel, but
// chromium still logs the status as a console error.
const ADVISOR_PATH = /\/api\/(advice|health|markers|regressions)\b|\/api\/queries\/[0-9a-f]+\/plan\b/;

// `run(page, result, context)` does the script's steps and fills `result`;
// it passing sets `result.ok`. `viewport`, `locale`, `timezoneId`: the
// browser's; `fullPage`: what the screenshots take; `permissions`: granted
// to the page's origin before it loads.
export async function inChromium({ url, screenshot, viewport = { width: 1440, height: 1000 }, fullPage = true, locale, timezoneId, permissions = [] }, run) {
  const origin = new URL(url).origin;
  const profile = mkdtempSync(join(tmpdir(), "pgvigil-chromium-"));
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
      viewport,
      deviceScaleFactor: 1,
      colorScheme: "light",
      ...(locale ? { locale } : {}),
      ...(timezoneId ? { timezoneId } : {}),
      timeout: 30000,
    });
    if (permissions.length) await context.grantPermissions(permissions, { origin });
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
      // A token prompt means the page did not get the token from the URL.
      result.pageErrors.push(`unexpected dialog: ${d.message()}`);
      d.dismiss();
    });

    await page.goto(url, { waitUntil: "load", timeout: WAIT_MS });
    await run(page, result, context);
    result.ok = true;
  } catch (e) {
    result.ok = false;
    result.error = String(e && e.stack ? e.stack : e);
    // What the page looked like when it failed, to see why.
    if (page) await page.screenshot({ path: screenshot, fullPage }).catch(() => {});
    if (page) result.bodyText = await page.locator("body").innerText().catch(() => "");
  } finally {
    if (context) await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  }
  console.log(JSON.stringify(result));
  process.exit(result.ok ? 0 : 1);
}
