// The add-in's code against a real `lithotse serve --https` (started by tests/addin/test_node.py,
// which passes its address, token and expectations in LITHOTSE_TEST_*; Node trusts the generated
// CA through NODE_EXTRA_CA_CERTS). Only Office's globals are replaced: a small fake for the
// CustomFunctions registry and invocations, office-addin-mock for Excel's objects.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { OfficeMockObject } from "office-addin-mock";

import { associate, table, value } from "../src/functions.js";
import { Batcher, buildTableFormula, presetRange, toIsoDate, toSerial, dimsFromArgs } from "../src/lithotse.js";
import { createRuntime, TOKEN_KEY, useRuntime } from "../src/runtime.js";
import { insertFormula, refreshBound, BINDINGS_SHEET, BINDINGS_HEADER } from "../src/workbook.js";

const env = process.env;
const need = (name) => {
  assert.ok(env[name], `${name} is not set: run these tests through pytest tests/addin/test_node.py`);
  return env[name];
};

function memoryStorage(token) {
  const data = new Map([[TOKEN_KEY, token]]);
  return { getItem: async (k) => data.get(k) ?? null, setItem: async (k, v) => data.set(k, v) };
}

/** A streaming invocation as Excel passes it: records every result, resolves waiters. */
function invocation() {
  const results = [];
  const waiters = [];
  const inv = {
    results,
    onCanceled: null,
    setResult(result) {
      results.push(result);
      for (const w of waiters.splice(0)) w();
    },
    async next(predicate = () => true, timeoutMs = 15000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const hit = results.find(predicate);
        if (hit !== undefined) return hit;
        if (Date.now() > deadline) throw new Error(`no matching result in ${timeoutMs} ms; got ${JSON.stringify(results)}`);
        await new Promise((resolve) => { waiters.push(resolve); setTimeout(resolve, 200); });
      }
    },
  };
  return inv;
}

const runtimes = [];
after(() => runtimes.forEach((rt) => rt.live.stream.stop()));

function serverRuntime(token = need("LITHOTSE_TEST_TOKEN"), base = need("LITHOTSE_TEST_BASE")) {
  const rt = createRuntime({ base, storage: memoryStorage(token), retryMs: 300 });
  useRuntime(rt);
  runtimes.push(rt);
  return rt;
}

/** Sum of a measure over the `derive show` rows of one group and a month range (independent of the
 *  server's lookup code); null when any of them is suppressed. */
function expected(show, grp, measure, from, to) {
  const rows = show.rows.filter((r) => r.grp === grp && r.period >= from && r.period <= to);
  if (rows.some((r) => r.suppressed)) return "suppressed";
  return rows.reduce((sum, r) => sum + r[measure], 0);
}

test("dates: serials, ISO text and Date objects, in the workbook's 1900 date system", () => {
  assert.equal(toIsoDate(45292), "2024-01-01");
  assert.equal(toIsoDate(45382.75), "2024-03-31");
  assert.equal(toIsoDate("2024-02-29"), "2024-02-29");
  assert.equal(toIsoDate([[45292]]), "2024-01-01");
  assert.equal(toIsoDate(new Date(2024, 0, 31)), "2024-01-31");
  assert.equal(toIsoDate(""), null);
  assert.equal(toSerial("2024-01-01"), 45292);
  assert.throws(() => toIsoDate("2024-02-30"), /not a date/);
  assert.throws(() => toIsoDate("31/01/2024"), /use a date cell or YYYY-MM-DD/);
});

test("dimension pairs and the older name=value form", () => {
  assert.deepEqual(dimsFromArgs(["grp", "a"]), { grp: "a" });
  assert.deepEqual(dimsFromArgs([["grp=a"]]), { grp: "a" });
  assert.deepEqual(dimsFromArgs(["year", 2024, "", null]), { year: "2024" });
  assert.throws(() => dimsFromArgs(["grp"]), /has no value/);
});

test("presets: last full month, quarter to date", () => {
  const today = new Date(2024, 4, 15);
  assert.deepEqual(presetRange("last-month", today), ["2024-04-01", "2024-04-30"]);
  assert.deepEqual(presetRange("quarter-to-date", today), ["2024-04-01", "2024-05-15"]);
  assert.deepEqual(presetRange("last-quarter", today), ["2024-01-01", "2024-03-31"]);
  assert.deepEqual(presetRange("year-to-date", today), ["2024-01-01", "2024-05-15"]);
});

test("the functions the add-in registers are the ones its metadata declares", () => {
  const metadata = JSON.parse(readFileSync(new URL("../../lithotse_desktop/serve/static/addin/functions.json",
    import.meta.url)));
  const registered = new Map();
  associate({ associate: (id, fn) => registered.set(id, fn) });
  assert.deepEqual([...registered.keys()].sort(), metadata.functions.map((f) => f.id).sort());
  for (const f of metadata.functions) {
    assert.equal(f.options.stream, true, `${f.id} streams`);
    // the invocation is the last argument Excel passes after the declared parameters
    assert.equal(registered.get(f.id).length, f.parameters.length + 1, `${f.id} arity`);
  }
});

test("VALUE equals lithotse derive show, for ISO text and date serials; suppressed cells say so", async () => {
  serverRuntime();
  const show = JSON.parse(need("LITHOTSE_TEST_EXPECTED"));
  const cases = [
    ["a", "n", "2024-01-01", "2024-03-31"], ["b", "total", "2024-02-01", "2024-02-29"],
    ["a", "total", 45292, 45351], ["c", "n", "2024-01-01", "2024-03-31"],
  ];
  for (const [grp, measure, from, to] of cases) {
    const inv = invocation();
    value("visits", measure, from, to, ["grp", grp], inv);
    const got = await inv.next();
    assert.equal(got, expected(show, grp, measure, toIsoDate(from), toIsoDate(to)), `${grp} ${measure} ${from}`);
    inv.onCanceled();
  }
});

test("TABLE spills a header row and the rows, suppressed measures as text", async () => {
  serverRuntime();
  const show = JSON.parse(need("LITHOTSE_TEST_EXPECTED"));
  const inv = invocation();
  table("visits", "2024-01-01", "2024-01-31", "period,grp,n", inv);
  const rows = await inv.next();
  assert.deepEqual(rows[0], ["period", "grp", "n"]);
  const want = show.rows.filter((r) => r.period === "2024-01-01")
    .map((r) => [r.period, r.grp, r.suppressed ? "suppressed" : r.n]);
  assert.deepEqual(rows.slice(1), want);
  assert.ok(rows.slice(1).some((r) => r[2] === "suppressed"));
  inv.onCanceled();
});

test("a rebuild during a streaming call pushes the new value to the cell", async () => {
  serverRuntime();
  const show = JSON.parse(need("LITHOTSE_TEST_EXPECTED"));
  const before = expected(show, "a", "n", "2024-01-01", "2024-03-31");
  const inv = invocation();
  value("visits", "n", "2024-01-01", "2024-03-31", ["grp", "a"], inv);
  assert.equal(await inv.next(), before);
  // a new export lands: 5 more visits of group a in February (the threshold: a cell revised by
  // fewer is held until more arrive); the user imports it
  const csv = join(need("LITHOTSE_TEST_CSV"), "visits.csv");
  const extra = [1, 2, 3, 4, 5].map((d) => `${90000 + d},2024-02-${String(d + 20).padStart(2, "0")},a,${d}`);
  writeFileSync(csv, `${readFileSync(csv, "utf8").trimEnd()}\n${extra.join("\n")}\n`);
  const started = Date.now();
  execFileSync(need("LITHOTSE_TEST_PYTHON"), ["-m", "lithotse_desktop", "import", "ehr"],
    { env: { ...env, LITHOTSE_WORKSPACE: need("LITHOTSE_TEST_WORKSPACE") }, stdio: "pipe" });
  const pushed = await inv.next((v) => v === before + 5, 10000);
  assert.equal(pushed, before + 5);
  assert.ok(Date.now() - started < 15000);
  inv.onCanceled();
});

test("unknown names, a wrong token and an unreachable service each give a clear cell text", async () => {
  serverRuntime();
  let inv = invocation();
  value("nope", "n", "", "", [], inv);
  assert.match(await inv.next(), /^error: no derivative named 'nope'; defined: visits/);
  inv.onCanceled();
  inv = invocation();
  value("visits", "nope", "", "", [], inv);
  assert.match(await inv.next(), /^error: visits: no measure 'nope'; measures: n, total/);
  inv.onCanceled();
  inv = invocation();
  value("visits", "n", "2024-01-01", "not a day", [], inv);
  assert.match(await inv.next(), /^error: "not a day" is not a date/);

  serverRuntime("wrong-token");
  inv = invocation();
  value("visits", "n", "", "", ["grp", "a"], inv);
  assert.match(await inv.next(), /^error: wrong or missing token — paste the output of 'lithotse token'/);
  inv.onCanceled();

  const closed = need("LITHOTSE_TEST_CLOSED_PORT");
  serverRuntime(need("LITHOTSE_TEST_TOKEN"), `https://localhost:${closed}`);
  inv = invocation();
  value("visits", "n", "", "", ["grp", "a"], inv);
  assert.match(await inv.next(), new RegExp(`^error: Lithotse is not serving on localhost:${closed} — open the desktop app`));
  inv.onCanceled();
  inv = invocation();
  table("visits", "", "", "", inv);
  assert.match((await inv.next())[0][0], /^error: Lithotse is not serving/);
  inv.onCanceled();
});

test("1,000 VALUE cells that Excel asks for at once go to the service as one request", async () => {
  const rt = serverRuntime();
  const show = JSON.parse(need("LITHOTSE_TEST_EXPECTED"));
  const cells = [];
  for (let i = 0; i < 1000; i += 1) {
    const inv = invocation();
    value("visits", "n", "2024-01-01", "2024-01-31", ["grp", i % 2 ? "a" : "b"], inv);
    cells.push(inv);
  }
  const got = await Promise.all(cells.map((c) => c.next()));
  assert.equal(rt.batcher.requests, 1);
  const want = ["b", "a"].map((g) => expected(show, g, "n", "2024-01-01", "2024-01-31"));
  assert.deepEqual(got, got.map((_, i) => want[i % 2]));
  cells.forEach((c) => c.onCanceled());
  assert.ok(rt.batcher instanceof Batcher);
});

test("task pane: Insert writes the formula at the selection (office-addin-mock workbook)", async () => {
  const written = [];
  const context = new OfficeMockObject({
    workbook: {
      getSelectedRange() {
        return {
          getCell: () => ({
            address: "Sheet1!B3",
            set formulas(value) { written.push(value); },
            load() {},
          }),
        };
      },
    },
  });
  const formula = buildTableFormula("visits", "2024-01-01", "2024-03-31");
  assert.equal(await insertFormula(context, formula), "Sheet1!B3");
  assert.deepEqual(written, [[[formula]]]);
});

test("task pane: Refresh bound tables rewrites the tables recorded by lithotse excel bind", async () => {
  serverRuntime();
  const show = JSON.parse(need("LITHOTSE_TEST_EXPECTED"));
  const binding = { table: "lithotse_visits", derivative: "visits", sheet: "Report", cell: "B2",
    from: "2024-01-01", to: "2024-01-31", columns: ["period", "grp", "n"] };
  const writes = [];
  const resized = [];
  const range = (address) => ({
    address,
    getResizedRange: (rows, cols) => range(`${address}+${rows}x${cols}`),
    getColumn: (i) => range(`${address}:col${i}`),
    getOffsetRange: (r, c) => range(`${address}@${r},${c}`),
    set values(v) { writes.push({ address, values: v }); },
    set numberFormat(v) { writes.push({ address, numberFormat: v }); },
  });
  const context = new OfficeMockObject({
    workbook: {
      worksheets: {
        getItemOrNullObject: (name) => ({
          isNullObject: name !== BINDINGS_SHEET,
          getUsedRangeOrNullObject: () => ({
            isNullObject: false,
            values: [[BINDINGS_HEADER, ""], [binding.table, JSON.stringify(binding)]],
            load() {},
          }),
        }),
        getItem: (name) => ({ name, getRange: range, tables: { add() { throw new Error("table exists"); } } }),
      },
      tables: {
        getItemOrNullObject: () => ({
          isNullObject: false,
          getDataBodyRange: () => ({ clear: (what) => writes.push({ cleared: what }) }),
          resize: (target) => resized.push(target.address),
        }),
      },
    },
  });
  const done = await refreshBound(context, serverRuntime().client);
  assert.equal(done.length, 1);
  const values = writes.find((w) => w.values).values;
  const want = show.rows.filter((r) => r.period === "2024-01-01")
    .map((r) => [toSerial(r.period), r.grp, r.suppressed ? "" : r.n]);
  assert.deepEqual(values, [["period", "grp", "n"], ...want]);
  assert.deepEqual(writes[0], { cleared: "Contents" });
  assert.deepEqual(resized, ["B2+3x2"]);
});
