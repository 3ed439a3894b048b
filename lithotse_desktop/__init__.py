"""Lithotse: land health records raw, derive Parquet aggregates, serve them to spreadsheet cells."""

__version__ = "0.1.0"
