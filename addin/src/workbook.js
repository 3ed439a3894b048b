// What the task pane does to the open workbook, through Excel's JavaScript API: write a formula at
// the selection, and rewrite the tables bound with `lithotse excel bind` (their queries are kept
// in the very hidden sheet _lithotse, one JSON binding per row, as excel/workbook.py writes them).

import { SUPPRESSED, toSerial } from "./lithotse.js";

export const BINDINGS_SHEET = "_lithotse";
export const BINDINGS_HEADER = "Lithotse bindings (managed by lithotse excel bind; do not edit)";

/** Put `formula` in the top-left cell of the selection; returns that cell's address. */
export async function insertFormula(context, formula) {
  const cell = context.workbook.getSelectedRange().getCell(0, 0);
  cell.formulas = [[formula]];
  cell.load("address");
  await context.sync();
  return cell.address;
}

/** The bindings recorded in the workbook (none when it has no _lithotse sheet). */
export async function readBindings(context) {
  const sheet = context.workbook.worksheets.getItemOrNullObject(BINDINGS_SHEET);
  await context.sync();
  if (sheet.isNullObject) return [];
  const used = sheet.getUsedRangeOrNullObject(true);
  used.load("values");
  await context.sync();
  if (used.isNullObject) return [];
  const out = [];
  for (const row of used.values) {
    if (row && row[0] && row[1] && row[0] !== BINDINGS_HEADER) out.push(JSON.parse(row[1]));
  }
  return out;
}

/** A table answer as cell values: dates as serials (with their column numbers), suppressed cells
 *  empty, as `lithotse excel refresh` writes the file. */
export function boundRows(answer) {
  const names = answer.columns.map((c) => c.name);
  const dateColumns = answer.columns.map((c, i) => (c.type.startsWith("date") ? i : -1)).filter((i) => i >= 0);
  const rows = [names];
  for (const row of answer.rows) {
    rows.push(names.map((name, i) => {
      const value = row[name];
      if (value === null || value === undefined || value === SUPPRESSED) return "";
      return dateColumns.includes(i) && typeof value === "string" ? toSerial(value.slice(0, 10)) : value;
    }));
  }
  return { rows, dateColumns };
}

/** Rewrite every bound table with the current aggregates; returns [{table, rows, version}]. */
export async function refreshBound(context, client) {
  const done = [];
  for (const binding of await readBindings(context)) {
    const answer = await client.table(binding.derivative, binding.from, binding.to, binding.columns);
    const { rows, dateColumns } = boundRows(answer);
    const height = Math.max(rows.length, 2);
    const width = rows[0].length;
    const sheet = context.workbook.worksheets.getItem(binding.sheet);
    const target = sheet.getRange(binding.cell).getResizedRange(height - 1, width - 1);
    const table = context.workbook.tables.getItemOrNullObject(binding.table);
    await context.sync();
    if (!table.isNullObject) table.getDataBodyRange().clear("Contents");
    const filled = rows.length >= 2 ? rows : [rows[0], rows[0].map(() => "")];
    target.values = filled;
    for (const col of dateColumns) {
      target.getColumn(col).getOffsetRange(1, 0).getResizedRange(-1, 0).numberFormat =
        filled.slice(1).map(() => ["yyyy-mm-dd"]);
    }
    if (table.isNullObject) {
      const added = sheet.tables.add(target, true);
      added.name = binding.table;
    } else {
      table.resize(target);
    }
    await context.sync();
    done.push({ table: binding.table, rows: rows.length - 1, version: answer.version });
  }
  return done;
}
