"""Lithotse: land health records raw, derive Parquet aggregates, serve them to spreadsheet cells."""

import os

__version__ = "0.1.0"

# pyarrow's default allocator (mimalloc) keeps the pages freed by each thread's batches and
# Parquet writers: a view build's two part writers held ~55 MB more at 1M Encounters than with
# the system allocator, at no cost in time. Read once, when pyarrow is first imported; a choice
# made in the environment stays.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
