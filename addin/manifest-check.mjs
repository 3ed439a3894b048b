// Offline check of the add-in's XML manifest: Microsoft's own converter (office-addin-manifest-converter,
// built on the manifest parser Office uses) turns it into the unified app manifest, which is then
// validated against the newest stable JSON schema that @microsoft/app-manifest ships. No schema for the
// XML form is published on any package registry, so this is the strictest check that runs offline.
// Usage: node manifest-check.mjs MANIFEST.xml   (exit 0 valid; 1 with the problems on stderr)
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { convert } from "office-addin-manifest-converter";
import { AppManifestUtils } from "@microsoft/app-manifest";

const require = createRequire(import.meta.url);

function newestStableSchema() {
  const root = path.join(path.dirname(require.resolve("@microsoft/app-manifest/package.json")),
    "build", "json-schemas", "teams");
  const versions = fs.readdirSync(root).filter((v) => /^v\d+(\.\d+)*$/.test(v));
  const number = (v) => v.slice(1).split(".").map(Number);
  versions.sort((a, b) => { const [x, y] = [number(a), number(b)]; return x[0] - y[0] || (x[1] || 0) - (y[1] || 0); });
  const version = versions.at(-1).slice(1);
  const schema = JSON.parse(fs.readFileSync(path.join(root, `v${version}`, "MicrosoftTeams.schema.json"), "utf8"));
  return { version, schema };
}

export async function checkManifest(xmlPath) {
  const xml = fs.readFileSync(xmlPath, "utf8");
  if (!xml.includes("<OfficeApp")) return [`${xmlPath}: not an Office add-in manifest (no <OfficeApp> element)`];
  const out = fs.mkdtempSync(path.join(os.tmpdir(), "lithotse-manifest-"));
  try {
    const { version, schema } = newestStableSchema();
    try {
      await convert(xmlPath, out, false, null, version, false);
    } catch (error) {
      return [`${xmlPath}: Office's manifest parser refused it: ${String(error.message || error).split("\n").join(" ")}`];
    }
    const converted = path.join(out, "manifest.json");
    if (!fs.existsSync(converted)) return [`${xmlPath}: Office's manifest parser could not read it`];
    const manifest = JSON.parse(fs.readFileSync(converted, "utf8"));
    manifest.$schema = schema.$id || manifest.$schema;
    manifest.manifestVersion = version;
    const problems = await AppManifestUtils.validateAgainstSchema(manifest, schema);
    return problems.map((p) => `${xmlPath}: ${p} (unified manifest schema v${version})`);
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname)) {
  const problems = await checkManifest(process.argv[2]);
  for (const problem of problems) console.error(problem);
  if (problems.length === 0) console.log(`${process.argv[2]}: valid`);
  process.exit(problems.length ? 1 : 0);
}
