// Builds the add-in into the Python package (lithotse_desktop/serve/static/addin/), where
// `lithotse serve --https` serves it: the sources as they are (plain ES modules, no bundler), the
// custom functions' metadata generated from the JSDoc of src/functions.js by Microsoft's
// custom-functions-metadata, the icons, and a help page. The output is committed, so users need
// no Node; `node build.mjs --check` fails when it is out of date (tests run it).

import { deflateSync } from "node:zlib";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { generateCustomFunctionsMetadata } from "custom-functions-metadata";

const here = dirname(fileURLToPath(import.meta.url));
const src = join(here, "src");
const out = join(here, "..", "lithotse_desktop", "serve", "static", "addin");
const check = process.argv.includes("--check");

function crc32(buf) {
  let c;
  let crc = 0xffffffff;
  for (const byte of buf) {
    c = (crc ^ byte) & 0xff;
    for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    crc = (crc >>> 8) ^ c;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

/** The Lithotse icon at `size` px: three rising bars on a rounded green square (RGBA PNG). */
function icon(size) {
  const px = Buffer.alloc(size * size * 4);
  const radius = size * 0.18;
  const bars = [[0.2, 0.55], [0.42, 0.35], [0.64, 0.18]];
  for (let y = 0; y < size; y += 1) {
    for (let x = 0; x < size; x += 1) {
      const dx = Math.max(radius - x - 0.5, x + 0.5 - (size - radius), 0);
      const dy = Math.max(radius - y - 0.5, y + 0.5 - (size - radius), 0);
      const inside = dx * dx + dy * dy <= radius * radius;
      const fx = (x + 0.5) / size;
      const fy = (y + 0.5) / size;
      const bar = bars.some(([left, top]) => fx >= left && fx < left + 0.16 && fy >= top && fy < 0.82);
      const i = (y * size + x) * 4;
      if (!inside) continue;
      const [r, g, b] = bar ? [255, 255, 255] : [11, 110, 79];
      px[i] = r; px[i + 1] = g; px[i + 2] = b; px[i + 3] = 255;
    }
  }
  const raw = Buffer.alloc((size * 4 + 1) * size);
  for (let y = 0; y < size; y += 1) px.copy(raw, y * (size * 4 + 1) + 1, y * size * 4, (y + 1) * size * 4);
  const header = Buffer.alloc(13);
  header.writeUInt32BE(size, 0);
  header.writeUInt32BE(size, 4);
  header.set([8, 6, 0, 0, 0], 8);
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk("IHDR", header),
    chunk("IDAT", deflateSync(raw, { level: 9 })), chunk("IEND", Buffer.alloc(0))]);
}

const HELP = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Lithotse add-in</title>
<link rel="stylesheet" href="taskpane.css"></head><body>
<h1>Lithotse add-in</h1>
<p>Cells read aggregates from the Lithotse service on this computer: keep the Lithotse desktop app
open, or run <code>lithotse serve --https</code>.</p>
<p><code>=LITHOTSE.VALUE(derivative, measure, from, to, [dim, value]…)</code> gives one number
(<code>suppressed</code> for a suppressed cell); <code>=LITHOTSE.TABLE(derivative, from, to, [columns])</code>
spills a table with a header row. Dates: date cells, date serials or YYYY-MM-DD text. Both update by
themselves when the derivative is rebuilt.</p>
<p>Open the Lithotse pane (Data tab), paste the output of <code>lithotse token</code> once, pick a
derivative and a date range, and insert a value or a table at the selection.</p>
</body></html>
`;

async function files() {
  const result = new Map();
  for (const name of readdirSync(src).sort()) result.set(name, readFileSync(join(src, name)));
  const generated = await generateCustomFunctionsMetadata(join(src, "functions.js"));
  if (generated.errors.length) throw new Error(`custom-functions-metadata: ${generated.errors.join("; ")}`);
  result.set("functions.json", Buffer.from(`${generated.metadataJson.trim()}\n`));
  result.set("help.html", Buffer.from(HELP));
  for (const size of [16, 32, 64, 80]) result.set(`assets/icon-${size}.png`, icon(size));
  return result;
}

const wanted = await files();
if (check) {
  const stale = [...wanted].filter(([name, data]) => {
    const path = join(out, name);
    return !existsSync(path) || !readFileSync(path).equals(data);
  }).map(([name]) => name);
  if (stale.length) {
    console.error(`out of date in ${out}: ${stale.join(", ")}; run: node addin/build.mjs`);
    process.exit(1);
  }
  console.log(`${out} is up to date (${wanted.size} files)`);
} else {
  rmSync(out, { recursive: true, force: true });
  for (const [name, data] of wanted) {
    mkdirSync(dirname(join(out, name)), { recursive: true });
    writeFileSync(join(out, name), data);
  }
  console.log(`built ${wanted.size} files into ${out}`);
}
