// The add-in's logic, free of Office globals so Node's test runner can run it: argument reading
// (dates, dimension pairs), the formula builder the task pane writes with, the client of the
// local API, the batching of cell lookups into POST /api/v1/values, and the live cells that
// follow the server's change notifications (GET /api/v1/events, Server-Sent Events).

export const SUPPRESSED = "suppressed";
export const VALUE_FUNCTION = "LITHOTSE.VALUE";
export const TABLE_FUNCTION = "LITHOTSE.TABLE";
const EXCEL_EPOCH_MS = Date.UTC(1899, 11, 30);
const DAY_MS = 86400000;
const ISO_DAY = /^(\d{4})-(\d{2})-(\d{2})$/;

export class ArgumentError extends Error {}

function pad(n, width = 2) {
  return String(n).padStart(width, "0");
}

function isoFromUtc(ms) {
  const d = new Date(ms);
  return `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
}

function isEmpty(value) {
  return value === null || value === undefined || (typeof value === "string" && value.trim() === "");
}

/** A date argument as ISO text: an Excel date serial (what a date cell passes), ISO text, or empty. */
export function toIsoDate(value) {
  if (Array.isArray(value)) {
    const flat = value.flat(Infinity);
    if (flat.length !== 1) throw new ArgumentError("a date argument must be one cell");
    value = flat[0];
  }
  if (isEmpty(value)) return null;
  if (typeof value === "number" && Number.isFinite(value)) {
    return isoFromUtc(EXCEL_EPOCH_MS + Math.floor(value) * DAY_MS);
  }
  if (value instanceof Date && !Number.isNaN(value.getTime())) {
    return isoFromUtc(Date.UTC(value.getFullYear(), value.getMonth(), value.getDate()));
  }
  const text = String(value).trim();
  const match = ISO_DAY.exec(text);
  if (match) {
    const [year, month, day] = match.slice(1).map(Number);
    const check = new Date(Date.UTC(year, month - 1, day));
    if (check.getUTCFullYear() === year && check.getUTCMonth() === month - 1 && check.getUTCDate() === day) {
      return text;
    }
  }
  throw new ArgumentError(`${JSON.stringify(value)} is not a date (use a date cell or YYYY-MM-DD)`);
}

/** An ISO day as the Excel date serial a date cell holds. */
export function toSerial(iso) {
  const [year, month, day] = ISO_DAY.exec(iso).slice(1).map(Number);
  return (Date.UTC(year, month - 1, day) - EXCEL_EPOCH_MS) / DAY_MS;
}

/** A dimension value as the API compares it: whole numbers without ".0", booleans lower case. */
function dimText(value) {
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number" && Number.isInteger(value)) return String(value);
  return String(value).trim();
}

/** The dimension filter from the arguments after "to": name, value pairs, or the older single
 *  "name=value" argument where a name is expected (the same rule as excel/formula.py). */
export function dimsFromArgs(args) {
  const items = (args || []).flat(Infinity);
  while (items.length && isEmpty(items[items.length - 1])) items.pop();
  const dims = {};
  let pos = 0;
  while (pos < items.length) {
    const name = items[pos];
    if (isEmpty(name)) {
      throw new ArgumentError(`dimension argument ${pos + 1} is empty: give dimensions as pairs, e.g. "grp","b"`);
    }
    const nameText = dimText(name);
    if (nameText.includes("=")) {
      const cut = nameText.indexOf("=");
      const key = nameText.slice(0, cut).trim();
      if (!key) throw new ArgumentError(`${JSON.stringify(nameText)}: no dimension name before '='`);
      dims[key] = nameText.slice(cut + 1).trim();
      pos += 1;
      continue;
    }
    if (pos + 1 >= items.length || isEmpty(items[pos + 1])) {
      throw new ArgumentError(`dimension ${JSON.stringify(nameText)} has no value: give dimensions as pairs, ` +
        `e.g. "${nameText}","b"`);
    }
    dims[nameText] = dimText(items[pos + 1]);
    pos += 2;
  }
  return dims;
}

function quote(value) {
  return `"${(value === null || value === undefined ? "" : String(value)).replaceAll('"', '""')}"`;
}

/** =LITHOTSE.VALUE(...) exactly as excel/formula.py's build_value_formula(..., addin="officejs"). */
export function buildValueFormula(derivative, measure, start = "", end = "", dims = {}) {
  const args = [derivative, measure, start || "", end || ""];
  for (const [name, value] of Object.entries(dims || {})) {
    if (String(name).includes("=")) throw new ArgumentError(`dimension name ${JSON.stringify(name)} contains '='`);
    args.push(name, value);
  }
  return `=${VALUE_FUNCTION}(${args.map(quote).join(",")})`;
}

/** =LITHOTSE.TABLE(...) exactly as excel/formula.py's build_table_formula(..., addin="officejs"). */
export function buildTableFormula(derivative, start = "", end = "", columns = []) {
  const args = [derivative, start || "", end || ""];
  const picked = (columns || []).filter((c) => c);
  if (picked.length) args.push(picked.join(","));
  return `=${TABLE_FUNCTION}(${args.map(quote).join(",")})`;
}

export function columnsFromArg(columns) {
  if (isEmpty(columns)) return null;
  const text = Array.isArray(columns) ? columns.flat(Infinity).filter((c) => !isEmpty(c)).join(",") : String(columns);
  const picked = text.split(",").map((c) => c.trim()).filter((c) => c);
  return picked.length ? picked : null;
}

// --- the local API ------------------------------------------------------------------------

export class ApiError extends Error {
  constructor(message, status = 0) {
    super(message);
    this.status = status;
  }
}

export function notServingText(base) {
  const where = new URL(base).host;
  return `Lithotse is not serving on ${where} — open the desktop app or run: lithotse serve --https`;
}

export const TOKEN_TEXT = "wrong or missing token — paste the output of 'lithotse token' into the Lithotse task pane";

/** Requests to the local API with the workspace token; failures become ApiError with a message a
 *  cell can show. */
export class LithotseClient {
  constructor({ base, getToken, fetchImpl }) {
    this.base = base.replace(/\/$/, "");
    this.getToken = getToken;
    this.fetch = fetchImpl || ((...args) => globalThis.fetch(...args));
  }

  async request(path, { method = "GET", body, signal } = {}) {
    const token = (await this.getToken()) || "";
    const headers = { Accept: "application/json", Authorization: `Bearer ${token}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await this.fetch(`${this.base}/api/v1${path}`, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal, cache: "no-store",
      });
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      throw new ApiError(notServingText(this.base), 0);
    }
    return response;
  }

  async json(path, options) {
    const response = await this.request(path, options);
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (response.status === 401) throw new ApiError(TOKEN_TEXT, 401);
    if (!response.ok) {
      const message = (data && data.error) || `HTTP ${response.status}`;
      throw new ApiError(message, response.status);
    }
    return data;
  }

  derivatives() {
    return this.json("/derivatives").then((d) => d.derivatives);
  }

  values(lookups) {
    return this.json("/values", { method: "POST", body: { lookups } }).then((d) => d.results);
  }

  table(derivative, from, to, columns) {
    const query = new URLSearchParams({ format: "json" });
    if (from) query.set("from", from);
    if (to) query.set("to", to);
    if (columns && columns.length) query.set("columns", columns.join(","));
    return this.json(`/derivatives/${encodeURIComponent(derivative)}/table?${query}`);
  }
}

/** What a VALUE cell shows for one answer of POST /values. */
export function cellOf(result) {
  if (result.error) return `error: ${result.error}`;
  if (result.suppressed) return SUPPRESSED;
  return result.value === null || result.value === undefined ? "" : result.value;
}

/** The spilled array of a TABLE cell: a header row, then the rows; suppressed measures as text. */
export function tableCells(answer) {
  const names = answer.columns.map((c) => c.name);
  const measures = new Set(answer.measures || []);
  const rows = [names];
  for (const row of answer.rows) {
    const hidden = Boolean(row.suppressed);
    rows.push(names.map((name) => {
      if (hidden && measures.has(name)) return SUPPRESSED;
      const value = row[name];
      return value === null || value === undefined ? "" : value;
    }));
  }
  return rows;
}

/** The table answer with only the chosen columns (all when none are chosen). */
export function pickColumns(answer, columns) {
  if (!columns || !columns.length) return answer;
  const names = answer.columns.map((c) => c.name);
  const missing = columns.filter((c) => !names.includes(c));
  if (missing.length) {
    throw new ApiError(`${answer.derivative}: no column ${JSON.stringify(missing[0]).replaceAll('"', "'")}; ` +
      `columns: ${names.join(", ")}`, 404);
  }
  return { ...answer, columns: columns.map((c) => answer.columns[names.indexOf(c)]) };
}

/** Collects the value lookups Excel asks for at once (it calls the function once per cell, in
 *  quick succession) and answers them with one POST /api/v1/values per batch. */
export class Batcher {
  constructor(client, { windowMs = 5, maxBatch = 5000 } = {}) {
    this.client = client;
    this.windowMs = windowMs;
    this.maxBatch = maxBatch;
    this.queue = [];
    this.timer = null;
    this.requests = 0;
  }

  lookup(item) {
    return new Promise((resolve) => {
      this.queue.push({ item, resolve });
      if (this.queue.length >= this.maxBatch) {
        this.flush();
      } else if (this.timer === null) {
        this.timer = setTimeout(() => this.flush(), this.windowMs);
      }
    });
  }

  flush() {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const batch = this.queue.splice(0, this.queue.length);
    if (!batch.length) return;
    this.requests += 1;
    this.client.values(batch.map((b) => b.item)).then(
      (results) => batch.forEach((b, i) => b.resolve(results[i] || { error: "no answer for this lookup" })),
      (err) => batch.forEach((b) => b.resolve({ error: err.message, status: err.status })),
    );
  }
}

// --- change notifications ---------------------------------------------------------------------

/** Reads GET /api/v1/events (Server-Sent Events) with fetch, so the token travels in the
 *  Authorization header; calls onVersions({name: version}) for every event and reconnects after
 *  a failure (each event carries the whole map, so nothing is missed across a reconnect). */
export class EventStream {
  constructor(client, onVersions, { retryMs = 2000, onState = () => {} } = {}) {
    this.client = client;
    this.onVersions = onVersions;
    this.retryMs = retryMs;
    this.onState = onState;
    this.controller = null;
    this.running = false;
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.loop();
  }

  stop() {
    this.running = false;
    if (this.controller) this.controller.abort();
  }

  async loop() {
    while (this.running) {
      this.controller = new AbortController();
      try {
        const response = await this.client.request("/events", { signal: this.controller.signal });
        if (response.status === 401) throw new ApiError(TOKEN_TEXT, 401);
        if (!response.ok || !response.body) throw new ApiError(`HTTP ${response.status}`, response.status);
        this.onState({ connected: true });
        await this.read(response.body);
        this.onState({ connected: false, error: "the event stream ended" });
      } catch (err) {
        if (!this.running) return;
        this.onState({ connected: false, error: err.message, status: err.status });
      }
      if (this.running) await new Promise((resolve) => setTimeout(resolve, this.retryMs));
    }
  }

  async read(body) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart());
        const event = (block.split("\n").find((l) => l.startsWith("event:")) || "event: message").slice(6).trim();
        if (event === "versions" && data.length) this.onVersions(JSON.parse(data.join("\n")).versions);
      }
    }
  }
}

/** The cells that show live values: each streaming call registers here, gets its first answer,
 *  and is answered again whenever the version of its derivative changes (or the connection to
 *  the service comes back). */
export class LiveCells {
  constructor(client, { batcher, retryMs = 2000 } = {}) {
    this.client = client;
    this.batcher = batcher || new Batcher(client);
    this.cells = new Map();
    this.nextId = 1;
    this.versions = null;
    this.stream = new EventStream(client, (versions) => this.onVersions(versions), {
      retryMs, onState: (state) => this.onState(state),
    });
    this.connected = false;
  }

  /** A streaming LITHOTSE.VALUE: setResult(number | "suppressed" | "error: …") now and on changes. */
  watchValue(lookup, setResult) {
    return this.add({ kind: "value", lookup, setResult, version: undefined });
  }

  /** A streaming LITHOTSE.TABLE: setResult(rows) now and on changes. */
  watchTable(query, setResult) {
    return this.add({ kind: "table", query, setResult, version: undefined });
  }

  add(cell) {
    const id = this.nextId++;
    this.cells.set(id, cell);
    this.refresh(cell);
    this.stream.start();
    return () => {
      this.cells.delete(id);
      if (this.cells.size === 0) {
        this.stream.stop();
        this.versions = null;
      }
    };
  }

  derivativeOf(cell) {
    return cell.kind === "value" ? cell.lookup.derivative : cell.query.derivative;
  }

  async refresh(cell) {
    if (cell.pending) {
      cell.again = true;
      return;
    }
    cell.pending = true;
    try {
      await this.answer(cell);
    } finally {
      cell.pending = false;
    }
    if (cell.again) {
      cell.again = false;
      if (this.isStale(cell)) this.refresh(cell);
    }
  }

  async answer(cell) {
    if (cell.kind === "value") {
      const result = await this.batcher.lookup(cell.lookup);
      cell.version = result.version;
      cell.failed = Boolean(result.error);
      cell.setResult(cellOf(result));
      return;
    }
    try {
      const { derivative, from, to, columns } = cell.query;
      // all columns, so the suppressed flag comes along; the chosen ones are picked here
      const answer = await this.client.table(derivative, from, to, null);
      cell.version = answer.version;
      cell.failed = false;
      cell.setResult(tableCells(pickColumns(answer, columns)));
    } catch (err) {
      cell.failed = true;
      cell.setResult([[`error: ${err.message}`]]);
    }
  }

  isStale(cell) {
    if (cell.failed) return true;
    const now = this.versions ? this.versions[this.derivativeOf(cell)] : undefined;
    return now !== undefined && now !== cell.version;
  }

  onVersions(versions) {
    this.versions = versions;
    for (const cell of this.cells.values()) {
      if (cell.pending) cell.again = true;
      else if (this.isStale(cell)) this.refresh(cell);
    }
  }

  onState(state) {
    const wasConnected = this.connected;
    this.connected = state.connected;
    if (!state.connected && wasConnected) this.versions = null;
  }
}

/** Answer every live cell again (a new token was pasted). */
LiveCells.prototype.refreshAll = function refreshAll() {
  for (const cell of this.cells.values()) this.refresh(cell);
  this.stream.stop();
  if (this.cells.size) {
    this.stream = new EventStream(this.client, (versions) => this.onVersions(versions), {
      retryMs: this.stream.retryMs, onState: (state) => this.onState(state),
    });
    this.versions = null;
    this.stream.start();
  }
};

/** The date presets of the task pane, as [first day, last day] ISO text ("" = open). */
export function presetRange(name, today = new Date()) {
  const y = today.getFullYear();
  const m = today.getMonth();
  const iso = (year, month, day) => isoFromUtc(Date.UTC(year, month, day));
  const quarterStart = m - (m % 3);
  switch (name) {
    case "last-month": return [iso(y, m - 1, 1), iso(y, m, 0)];
    case "quarter-to-date": return [iso(y, quarterStart, 1), iso(y, m, today.getDate())];
    case "last-quarter": return [iso(y, quarterStart - 3, 1), iso(y, quarterStart, 0)];
    case "year-to-date": return [iso(y, 0, 1), iso(y, m, today.getDate())];
    case "all": return ["", ""];
    default: throw new ArgumentError(`no date preset ${JSON.stringify(name)}`);
  }
}
