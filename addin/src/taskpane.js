// The task pane: the service's state and workspace, the token, a derivative with its measure and
// dimension values, a calendar for the date range, and the buttons that write formulas at the
// selection or refresh the workbook's bound tables.

import { associate } from "./functions.js";
import { ApiError, buildTableFormula, buildValueFormula, presetRange, TOKEN_TEXT } from "./lithotse.js";
import { runtime } from "./runtime.js";
import { insertFormula, refreshBound } from "./workbook.js";

const $ = (id) => document.getElementById(id);
const state = { derivatives: [], from: "", to: "", month: null, picking: false };

function show(id, text, bad = false) {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle("bad", bad);
  el.classList.toggle("ok", !bad && id === "status");
}

function current() {
  return state.derivatives.find((d) => d.name === $("derivative").value);
}

function dims() {
  const out = {};
  for (const input of document.querySelectorAll("#dims input")) {
    if (input.value.trim()) out[input.dataset.dim] = input.value.trim();
  }
  return out;
}

function formulas() {
  const d = current();
  if (!d) return null;
  return {
    value: buildValueFormula(d.name, $("measure").value, state.from, state.to, dims()),
    table: buildTableFormula(d.name, state.from, state.to),
  };
}

function preview() {
  const f = formulas();
  $("formula").textContent = f ? f.value : "";
}

async function loadDimensionValues(d) {
  const box = $("dims");
  box.textContent = "";
  for (const dim of d.dimensions || []) {
    const row = document.createElement("div");
    row.className = "dim-row";
    const label = document.createElement("label");
    label.textContent = `${dim} (optional)`;
    const input = document.createElement("input");
    input.dataset.dim = dim;
    input.id = `dim-${dim}`;
    label.htmlFor = input.id;
    input.setAttribute("list", `${input.id}-values`);
    input.addEventListener("input", preview);
    const list = document.createElement("datalist");
    list.id = `${input.id}-values`;
    row.append(label, input, list);
    box.append(row);
  }
  if (!(d.dimensions || []).length || !d.version) return;
  try {
    const answer = await runtime().client.table(d.name, "", "", d.dimensions);
    for (const dim of d.dimensions) {
      const seen = [...new Set(answer.rows.map((r) => r[dim]).filter((v) => v !== null && v !== ""))].sort();
      const list = $(`dim-${dim}-values`);
      for (const v of seen) list.append(new Option(String(v)));
    }
  } catch {
    // the values only help typing; the pane works without them
  }
}

function pickDerivative() {
  const d = current();
  const measure = $("measure");
  measure.textContent = "";
  for (const m of d ? d.measures : []) measure.append(new Option(m.fn ? `${m.name} (${m.fn})` : m.name, m.name));
  if (d) loadDimensionValues(d);
  preview();
}

async function connect() {
  const rt = runtime();
  try {
    const status = await rt.client.json("/status");
    state.derivatives = await rt.client.derivatives();
    show("status", `Connected: workspace ${status.workspace.name} (${status.workspace.path}), ` +
      `${state.derivatives.length} derivatives`);
    $("token-box").open = false;
  } catch (err) {
    const hint = err instanceof ApiError && err.status === 401 ? TOKEN_TEXT : err.message;
    show("status", hint, true);
    if (err instanceof ApiError && err.status === 401) $("token-box").open = true;
    state.derivatives = [];
  }
  const select = $("derivative");
  const keep = select.value;
  select.textContent = "";
  for (const d of state.derivatives) {
    select.append(new Option(d.version ? d.name : `${d.name} (not built yet)`, d.name));
  }
  if (keep && state.derivatives.some((d) => d.name === keep)) select.value = keep;
  pickDerivative();
}

// --- calendar ---------------------------------------------------------------------------------
const MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
  "October", "November", "December"];

function isoOf(date) {
  const m = String(date.getMonth() + 1).padStart(2, "0");
  const d = String(date.getDate()).padStart(2, "0");
  return `${date.getFullYear()}-${m}-${d}`;
}

function setRange(from, to, jump = true) {
  if (from && to && from > to) [from, to] = [to, from];
  state.from = from || "";
  state.to = to || "";
  $("from").value = state.from;
  $("to").value = state.to;
  if (jump && state.from) {
    const [y, m] = state.from.split("-").map(Number);
    state.month = new Date(y, m - 1, 1);
  }
  drawCalendar();
  preview();
}

function drawCalendar() {
  const month = state.month || new Date(new Date().getFullYear(), new Date().getMonth(), 1);
  state.month = month;
  $("month-label").textContent = `${MONTHS[month.getMonth()]} ${month.getFullYear()}`;
  const grid = $("days");
  grid.textContent = "";
  for (const name of ["Mo", "Tu", "We", "Th", "Fr", "Sa", "Su"]) {
    const head = document.createElement("span");
    head.className = "head";
    head.textContent = name;
    grid.append(head);
  }
  const offset = (month.getDay() + 6) % 7;
  for (let i = 0; i < 42; i += 1) {
    const day = new Date(month.getFullYear(), month.getMonth(), 1 - offset + i);
    const iso = isoOf(day);
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = String(day.getDate());
    button.dataset.date = iso;
    button.setAttribute("aria-label", iso);
    if (day.getMonth() !== month.getMonth()) button.classList.add("outside");
    if (state.from && state.to && iso >= state.from && iso <= state.to) button.classList.add("in-range");
    if (iso === state.from || iso === state.to) button.classList.add("edge");
    button.addEventListener("click", () => clickDay(iso));
    grid.append(button);
  }
}

function clickDay(iso) {
  if (!state.picking) {
    state.picking = true;
    setRange(iso, iso, false);
  } else {
    state.picking = false;
    setRange(state.from, iso, false);
  }
}

function moveMonth(step) {
  state.month = new Date(state.month.getFullYear(), state.month.getMonth() + step, 1);
  drawCalendar();
}

// --- actions ----------------------------------------------------------------------------------
async function insert(kind) {
  const f = formulas();
  if (!f) {
    show("message", "Pick a derivative first.", true);
    return;
  }
  try {
    const where = await Excel.run((context) => insertFormula(context, f[kind]));
    show("message", `Inserted at ${where}.`);
  } catch (err) {
    show("message", `Could not insert: ${err.message}`, true);
  }
}

async function refresh() {
  try {
    const done = await Excel.run((context) => refreshBound(context, runtime().client));
    show("message", done.length ? `Refreshed ${done.map((d) => `${d.table} (${d.rows} rows)`).join(", ")}.`
      : "This workbook has no tables bound with lithotse excel bind.");
  } catch (err) {
    show("message", `Could not refresh: ${err.message}`, true);
  }
}

function wire() {
  $("save-token").addEventListener("click", async () => {
    await runtime().setToken($("token").value);
    $("token").value = "";
    await connect();
  });
  $("derivative").addEventListener("change", pickDerivative);
  $("measure").addEventListener("change", preview);
  $("from").addEventListener("change", () => setRange($("from").value, state.to));
  $("to").addEventListener("change", () => setRange(state.from, $("to").value));
  $("prev-month").addEventListener("click", () => moveMonth(-1));
  $("next-month").addEventListener("click", () => moveMonth(1));
  for (const button of document.querySelectorAll("[data-preset]")) {
    button.addEventListener("click", () => setRange(...presetRange(button.dataset.preset)));
  }
  $("insert-value").addEventListener("click", () => insert("value"));
  $("insert-table").addEventListener("click", () => insert("table"));
  $("refresh-bound").addEventListener("click", refresh);
}

if (globalThis.CustomFunctions) associate();
Office.onReady(() => {
  wire();
  drawCalendar();
  connect();
});
