// The custom functions in the LITHOTSE namespace (the manifest's <Namespace>): the same arguments
// as the xlwings add-in's LITHOTSE_VALUE / LITHOTSE_TABLE, and streaming, so a cell updates by
// itself when its derivative is rebuilt. functions.json is generated from these comments by
// Microsoft's custom-functions-metadata (see build.mjs).

import { ArgumentError, columnsFromArg, dimsFromArgs, toIsoDate } from "./lithotse.js";
import { runtime } from "./runtime.js";

function text(value) {
  return value === null || value === undefined ? "" : String(value).trim();
}

/**
 * One aggregate from Lithotse on this computer; it updates by itself when the derivative is rebuilt.
 * Suppressed cells show "suppressed".
 * @customfunction VALUE
 * @param {string} derivative Derivative name (see lithotse derive list).
 * @param {string} measure Measure, such as visits.
 * @param {any} [from] First day: a date cell, a date serial or YYYY-MM-DD; empty for open.
 * @param {any} [to] Last day: a date cell, a date serial or YYYY-MM-DD; empty for open.
 * @param {any[]} [dims] Dimension and value pairs, such as "department","Cardiology".
 * @param {CustomFunctions.StreamingInvocation<any>} invocation
 * @streaming
 */
export function value(derivative, measure, from, to, dims, invocation) {
  let lookup;
  try {
    lookup = {
      derivative: text(derivative), measure: text(measure),
      from: toIsoDate(from), to: toIsoDate(to), dims: dimsFromArgs(dims || []),
    };
  } catch (err) {
    if (!(err instanceof ArgumentError)) throw err;
    invocation.setResult(`error: ${err.message}`);
    return;
  }
  invocation.onCanceled = runtime().live.watchValue(lookup, (result) => invocation.setResult(result));
}

/**
 * A derivative as a table that spills: a header row, then one row per period and dimension value;
 * it updates by itself when the derivative is rebuilt.
 * @customfunction TABLE
 * @param {string} derivative Derivative name (see lithotse derive list).
 * @param {any} [from] First day: a date cell, a date serial or YYYY-MM-DD; empty for open.
 * @param {any} [to] Last day: a date cell, a date serial or YYYY-MM-DD; empty for open.
 * @param {any} [columns] Columns to show, comma-separated (default: all).
 * @param {CustomFunctions.StreamingInvocation<any[][]>} invocation
 * @streaming
 */
export function table(derivative, from, to, columns, invocation) {
  let query;
  try {
    query = { derivative: text(derivative), from: toIsoDate(from), to: toIsoDate(to), columns: columnsFromArg(columns) };
  } catch (err) {
    if (!(err instanceof ArgumentError)) throw err;
    invocation.setResult([[`error: ${err.message}`]]);
    return;
  }
  invocation.onCanceled = runtime().live.watchTable(query, (rows) => invocation.setResult(rows));
}

export const FUNCTIONS = { VALUE: value, TABLE: table };

/** Register the functions with Excel (the page calls this once Office is ready). */
export function associate(customFunctions = globalThis.CustomFunctions) {
  for (const [id, fn] of Object.entries(FUNCTIONS)) customFunctions.associate(id, fn);
}
