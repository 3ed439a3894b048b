// The task pane in headless Chromium (Debian's), loaded from a real `lithotse serve --https` whose
// CA the browser trusts (tests/addin/test_taskpane_browser.py runs `lithotse excel trust-cert`
// into a throwaway HOME first). Office.js, which comes from Microsoft's CDN, is replaced by a
// small stand-in whose workbook is an office-addin-mock object that records what is written.
// Usage: node e2e/taskpane.mjs BASE TOKEN SCREENSHOT_DIR   (prints a JSON report)

import { readFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const [base, token, shots] = process.argv.slice(2);
const here = dirname(fileURLToPath(import.meta.url));
const mockLib = join(here, "..", "node_modules", "office-addin-mock", "lib");

/** office-addin-mock's CommonJS modules wrapped for the page, with the one name it takes from
 *  office-addin-manifest (the OfficeApp list of hosts). */
function mockBundle() {
  const modules = {};
  for (const name of ["main", "officeMockObject", "host", "possibleErrors"]) {
    modules[`./${name}`] = readFileSync(join(mockLib, `${name}.js`), "utf8");
  }
  return `(() => {
  const sources = ${JSON.stringify(modules)};
  const cache = { "office-addin-manifest": { OfficeApp: { Excel: "excel" } } };
  function load(id) {
    if (cache[id]) return cache[id];
    const module = { exports: {} };
    cache[id] = module.exports;
    new Function("require", "module", "exports", sources[id])(load, module, module.exports);
    cache[id] = module.exports;
    return module.exports;
  }
  window.OfficeAddinMock = load("./main");
})();`;
}

const OFFICE_STAND_IN = `
${mockBundle()}
window.__written = [];
const workbook = new window.OfficeAddinMock.OfficeMockObject({
  workbook: {
    getSelectedRange() {
      return { getCell: () => ({ address: "Sheet1!B3", load() {},
        set formulas(value) { window.__written.push(value); } }) };
    },
  },
});
window.Office = { onReady: (callback) => Promise.resolve(callback({ host: "Excel", platform: "PC" })) };
window.Excel = { run: (batch) => batch(workbook) };
`;

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  env: process.env,
});
const report = {};
try {
  const context = await browser.newContext({ viewport: { width: 320, height: 900 } });
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (err) => problems.push(String(err)));
  await page.route("https://appsforoffice.microsoft.com/**", (route) =>
    route.fulfill({ contentType: "text/javascript", body: OFFICE_STAND_IN }));
  const response = await page.goto(`${base}/addin/taskpane.html`);
  report.status = response.status();
  await page.waitForSelector("#status.bad");
  report.before_token = await page.textContent("#status");
  await page.fill("#token", token);
  await page.click("#save-token");
  await page.waitForSelector("#status.ok");
  report.connected = await page.textContent("#status");
  await page.selectOption("#derivative", "visits");
  // the calendar opens on this month: go back to January 2024, click the 1st, then March 31st
  for (let i = 0; i < 600 && (await page.textContent("#month-label")) !== "January 2024"; i += 1) {
    const [month, year] = (await page.textContent("#month-label")).split(" ");
    await page.click(Number(year) > 2024 || month !== "January" ? "#prev-month" : "#next-month");
  }
  await page.click('#days button[data-date="2024-01-01"]');
  await page.click("#next-month");
  await page.click("#next-month");
  await page.click('#days button[data-date="2024-03-31"]');
  report.range = [await page.inputValue("#from"), await page.inputValue("#to")];
  await page.click("#insert-table");
  await page.waitForFunction(() => window.__written.length > 0);
  report.written = await page.evaluate(() => window.__written);
  report.message = await page.textContent("#message");
  await page.screenshot({ path: join(shots, "taskpane-320.png"), fullPage: true });
  await page.setViewportSize({ width: 500, height: 900 });
  await page.screenshot({ path: join(shots, "taskpane-500.png"), fullPage: true });
  report.problems = problems;
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
