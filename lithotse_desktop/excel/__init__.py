"""Spreadsheets: exports, workbook bindings and refresh, and the thin xlwings layer."""
