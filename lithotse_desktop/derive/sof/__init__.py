"""SQL-on-FHIR v2: compile ViewDefinitions to DuckDB or Spark SQL (vectorised, no per-row Python)."""

from .compile import compile_view, validate_view
from .errors import ViewError
from .run import run_view, run_view_spark

__all__ = ["ViewError", "compile_view", "run_view", "run_view_spark", "validate_view"]
