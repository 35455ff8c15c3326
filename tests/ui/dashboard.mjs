// Drives the Tidewater dashboard in headless Debian Chromium through
// playwright-core, for tests/dashboard.rs.
//
//   node tests/ui/dashboard.mjs <base url> <screenshot.png> '<expectations json>'
//
// Expectations: {"counts": {"succeeded": 30, ...}, "rows": ["id", ...],
// "tenant_rows": {"tenant": "t", "ids": ["id", ...]}, "rows_at_least": 25, "executors": 4, "gpu_devices": 2, "alert": "name",
// "query": "name", "models": true, "failed": ["id", ...], "detail": "id",
// "detail_text": ["..."], "settle_ms": 3000, "token": "tw_..."}. With "token", the page
// must first ask for one, refuse a wrong one, and sign in with this one. The detail is opened from the failed filter's rows
// when "failed" is given.
// Exits non-zero with a message on the first expectation that fails; writes
// `<screenshot>` (the page) and `<screenshot>-detail.png` (a task's detail).

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [base, screenshot, expectJson = "{}"] = process.argv.slice(2);
if (!base || !screenshot) {
  console.error("usage: node dashboard.mjs <base url> <screenshot.png> [expectations json]");
  process.exit(2);
}
const expect = JSON.parse(expectJson);
const TIMEOUT = 20_000;

function fail(message) {
  throw new Error(message);
}

const userDataDir = mkdtempSync(join(tmpdir(), "tidewater-chromium-"));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM_BIN || "/usr/bin/chromium",
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
  ],
  viewport: { width: 1440, height: 1100 },
  deviceScaleFactor: 1,
});

const pageErrors = [];
let exitCode = 0;
let page = null;
try {
  page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(TIMEOUT);
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  page.on("console", (m) => {
    // A failed fetch is shown in its panel; script errors are not allowed.
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) pageErrors.push(m.text());
  });

  await page.goto(`${base}/ui/`);
  if (expect.token) {
    // Auth is on: the page asks for a token; a wrong one is refused, the
    // right one signs the tab in.
    await page.waitForSelector("#signin:not([hidden])").catch(() => fail("no sign-in form where auth is on"));
    await page.fill("#signin-token", `tw_0123456789abcdef_${"0".repeat(64)}`);
    await page.click("#signin button");
    await page
      .waitForFunction(() => !document.getElementById("signin").hidden && document.getElementById("signin-note").textContent.includes("refused"))
      .catch(() => fail("a wrong token was not refused"));
    await page.fill("#signin-token", expect.token);
    await page.click("#signin button");
  }
  await page.waitForSelector('#status[data-state="live"]');

  // The state counts reach what the test submitted.
  for (const [state, n] of Object.entries(expect.counts ?? {})) {
    await page
      .waitForFunction(
        ([s, want]) => {
          const el = document.querySelector(`#counts .count[data-state="${s}"]`);
          return el && Number(el.dataset.count) >= want;
        },
        [state, n],
      )
      .catch(async () => {
        const got = await page.getAttribute(`#counts .count[data-state="${state}"]`, "data-count");
        fail(`count of ${state}: wanted ${n}, the page shows ${got}`);
      });
  }

  // The rows appear in the task table (newest first, first page).
  for (const id of expect.rows ?? []) {
    await page
      .waitForSelector(`#task-rows tr[data-id="${id}"]`)
      .catch(() => fail(`task row ${id} never appeared`));
  }

  // Filtering by tenant lists exactly that tenant's tasks.
  if (expect.tenant_rows) {
    const { tenant, ids } = expect.tenant_rows;
    await page.fill("#filter-tenant", tenant);
    await page
      .waitForFunction((want) => {
        const rows = [...document.querySelectorAll("#task-rows tr[data-id]")].map((r) => r.dataset.id).sort();
        return JSON.stringify(rows) === JSON.stringify([...want].sort());
      }, ids)
      .catch(async () => {
        const shown = await page.$$eval("#task-rows tr[data-id]", (rs) => rs.map((r) => r.dataset.id));
        fail(`tenant ${tenant}: wanted rows ${ids}, shown ${shown}`);
      });
    await page.fill("#filter-tenant", "");
    await page.locator("#filter-tenant").blur();
  }

  if (expect.rows_at_least !== undefined) {
    await page
      .waitForFunction((n) => document.querySelectorAll("#task-rows tr[data-id]").length >= n, expect.rows_at_least)
      .catch(() => fail(`wanted at least ${expect.rows_at_least} task rows`));
  }

  // Executors with their bars and GPU devices.
  if (expect.executors !== undefined) {
    await page
      .waitForFunction((n) => document.querySelectorAll("#executors .executor").length === n, expect.executors)
      .catch(() => fail(`wanted ${expect.executors} executors`));
  }
  if (expect.gpu_devices !== undefined) {
    const devices = await page.locator("#executors .device").count();
    if (devices !== expect.gpu_devices) fail(`wanted ${expect.gpu_devices} GPU devices, saw ${devices}`);
  }
  if (expect.alert) {
    await page
      .waitForSelector(`#alerts .alert[data-alert="${expect.alert}"]`)
      .catch(() => fail(`alert ${expect.alert} is not shown firing`));
  }
  if (expect.query) {
    await page.waitForSelector(`#queries .query[data-query="${expect.query}"] tbody tr`).catch(() => fail(`query ${expect.query} shows no rows`));
  }
  if (expect.models) {
    await page.waitForSelector('#models .model[data-target="run_time"]').catch(() => fail("no run-time model version shown"));
  }

  // Let the chart gather a few seconds of points, then take the page.
  await page.waitForTimeout(expect.settle_ms ?? 3000);
  await page.screenshot({ path: screenshot, fullPage: true });

  // Filtering by state: only failed tasks are listed.
  if (expect.failed?.length) {
    await page.selectOption("#filter-state", "failed");
    await page.waitForFunction((ids) => {
      const rows = [...document.querySelectorAll("#task-rows tr[data-id]")];
      const shown = new Set(rows.map((r) => r.dataset.id));
      return rows.length > 0 && rows.every((r) => r.dataset.state === "failed") && ids.every((id) => shown.has(id));
    }, expect.failed).catch(async () => {
      const shown = await page.$$eval("#task-rows tr[data-id]", (rs) => rs.map((r) => `${r.dataset.id}:${r.dataset.state}`));
      fail(`failed filter: wanted ${expect.failed}, shown ${shown}`);
    });
  }

  // A click opens the task's detail.
  if (expect.detail) {
    await page.click(`#task-rows tr[data-id="${expect.detail}"]`);
    await page.waitForSelector("#detail:not([hidden])");
    await page.waitForFunction((id) => document.getElementById("detail-title").textContent === id, expect.detail);
    await page.waitForSelector("#detail-body .badge");
    const text = await page.textContent("#detail-body");
    for (const want of expect.detail_text ?? []) {
      if (!text.includes(want)) fail(`detail of ${expect.detail} lacks ${JSON.stringify(want)}: ${text}`);
    }
    await page.screenshot({ path: screenshot.replace(/\.png$/, "-detail.png") });
  }

  if (pageErrors.length) fail(`script errors on the page: ${pageErrors.join(" | ")}`);
  const shown = await page.$$eval("#counts .count", (cs) => Object.fromEntries(cs.map((c) => [c.dataset.state, c.dataset.count])));
  console.log(JSON.stringify({ ok: true, counts: shown }));
} catch (e) {
  console.error(`dashboard check failed: ${e.message}`);
  exitCode = 1;
  if (page) await page.screenshot({ path: screenshot.replace(/\.png$/, "-failure.png"), fullPage: true }).catch(() => {});
} finally {
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
process.exit(exitCode);
