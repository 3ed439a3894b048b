// Timings through the add-in's own code over real HTTPS (bench/addin.py starts the server and
// passes BASE TOKEN CSV PYTHON WORKSPACE REBUILDS): rebuild → streaming cell, and 1,000 VALUE
// cells at once against one direct POST /api/v1/values of the same lookups.
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { value } from "../src/functions.js";
import { createRuntime, TOKEN_KEY, useRuntime } from "../src/runtime.js";

const [base, token, csvFolder, python, workspace, rebuilds] = process.argv.slice(2);
const data = new Map([[TOKEN_KEY, token]]);
const rt = createRuntime({ base, storage: { getItem: async (k) => data.get(k), setItem: async () => {} } });
useRuntime(rt);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function cell(args) {
  const results = [];
  let wake = () => {};
  const inv = { onCanceled: null, setResult: (v) => { results.push(v); wake(); } };
  value(...args, inv);
  inv.next = (n) => new Promise((resolve) => {
    const check = () => (results.length >= n ? resolve(results[n - 1]) : (wake = check));
    check();
  });
  return inv;
}

// (a) rebuild → new value in the streaming cell
const live = cell(["visits", "n", "", "", ["grp", "a"]]);
await live.next(1);
const lags = [];
const csv = join(csvFolder, "visits.csv");
for (let i = 0; i < Number(rebuilds); i += 1) {
  writeFileSync(csv, `${readFileSync(csv, "utf8").trimEnd()}\n${800000 + i},2024-02-10,a,1\n`);
  execFileSync(python, ["-m", "lithotse_desktop", "import", "ehr"], { env: { ...process.env, LITHOTSE_WORKSPACE: workspace } });
  const finished = performance.now();   // the import (and its build) has returned: the version is published
  await live.next(i + 2);
  lags.push((performance.now() - finished) / 1000);
}
live.onCanceled();

// (b) 1,000 cells at once, against one direct POST of the same lookups
const lookups = Array.from({ length: 1000 }, (_, i) => ["visits", "n", "2024-01-01", "2024-03-31", ["grp", i % 2 ? "a" : "b"]]);
const direct = [];
const cells = [];
for (let round = 0; round < 5; round += 1) {
  let t = performance.now();
  await rt.client.values(lookups.map(([d, m, f, to, dims]) => ({ derivative: d, measure: m, from: f, to, dims: { grp: dims[1] } })));
  direct.push((performance.now() - t) / 1000);
  t = performance.now();
  const batch = lookups.map((args) => cell(args));
  await Promise.all(batch.map((c) => c.next(1)));
  cells.push((performance.now() - t) / 1000);
  batch.forEach((c) => c.onCanceled());
}
rt.live.stream.stop();
console.log(JSON.stringify({ rebuild_lag_median: median(lags), rebuild_lags: lags,
  cells_1000: median(cells), direct_1000: median(direct) }));
