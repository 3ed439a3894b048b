"""Spec → SQL, in one dialect-aware place.

Values from specs are always bound parameters. Identifiers are never checked against a list
of allowed characters: a column name is any text the input's header holds, it must be one of
the input's columns (checked here against the schema), and it reaches SQL only through
:meth:`Dialect.quote`. Checks that need the input's schema (unknown column,
a mean over text, a date field that is not a date) raise :class:`SpecError` naming the
spec field, before any build starts. Two dialects: DuckDB's (:data:`DUCKDB`) and Spark SQL's
(:data:`SPARK`, for builds on Spark Connect); a measure Spark cannot compute exactly as DuckDB
does is refused there with a SpecError naming it, never approximated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import Any

import pyarrow as pa

from ..connectors import NATIVE_TYPES, NativeColumn, NativeRead
from ..dates import DateRange
from ..errors import LithotseError
from .spec import SpecError, dimension_alias

PERIOD = "period"
CELL_COUNT = "__n"
PEOPLE = "__people"
ZERO_ONE = "__zero_one_"
"""Internal columns of an aggregate that suppresses (``__zero_one_<measure index>``): per cell, 0
where every value the measure read is 0 or 1, 1 where one is not (see :mod:`.measures`)."""
VALUE_MEASURES = ("sum", "mean", "median", "percentile", "min", "max")
"""Measures of a column's values (not counts of them)."""
TWO_VALUE_PARTS = ("_high", "_low", "_held")
"""Suffixes of the internal columns of the first :data:`VALUE_MEASURES` of a numeric column
(``__zero_one_<i>_high``, …): per cell, where the column holds exactly two values, how many rows
hold the higher one and the lower one (a yes/no coded 1/2: the sum and the count give both), else
null; and how many rows hold a value (a sum and a mean give it: their quotient)."""
PRESENT = "_present"
"""Suffix of the internal column of a ``count_distinct`` (``__zero_one_<i>_present``): how many
rows of the cell hold a value (a death date filled in for 3 people has 3 distinct values; see
:func:`.measures.subcounts` for the columns it is held to the threshold for)."""


COUNT_STAR = "count_star()"


class Dialect:
    """SQL spelling that differs between engines."""

    name = "duckdb"

    def quote(self, ident: str) -> str:
        """Any name as a quoted identifier: double quotes around it, its own double quotes doubled."""
        if "\x00" in ident:
            raise SpecError("column", f"{ident!r}: a name cannot hold a NUL character")
        return '"' + ident.replace('"', '""') + '"'

    def param(self, number: int) -> str:
        """Numbered placeholders, so one bound value can appear several times in a query."""
        return f"${number}"

    def row_identity(self, alias: str) -> str:
        """A 64-bit hash of a whole row of the table read as ``alias``: the same for the same row
        read twice (row numbers are not: a parallel scan numbers rows in no set order)."""
        return f"hash({self.quote(alias)})"

    def from_duckdb(self, sql: str) -> str:
        """SQL written by DuckDB (``json_deserialize_sql``) in this dialect's spelling."""
        return sql

    def period(self, grain: str, day_sql: str) -> str:
        return f"CAST(date_trunc('{grain}', {day_sql}) AS DATE)"

    def local_day(self, column_sql: str, typ: pa.DataType, tz_param: str) -> str:
        if pa.types.is_date(typ):
            return f"CAST({column_sql} AS DATE)"
        if pa.types.is_timestamp(typ):
            if typ.tz is not None:
                return f"CAST(timezone({tz_param}, {column_sql}) AS DATE)"
            return f"CAST({column_sql} AS DATE)"
        if _is_text(typ):
            return f"TRY_CAST(substr({column_sql}, 1, 10) AS DATE)"
        if pa.types.is_integer(typ):  # a year: its first day
            return f"CASE WHEN {column_sql} BETWEEN 1 AND 9999 THEN make_date(CAST({column_sql} AS INTEGER), 1, 1) END"
        raise TypeError(str(typ))

    def full_years(self, start_sql: str, end_sql: str) -> str:
        return f"date_sub('year', {start_sql}, {end_sql})"

    def code_from_concept(self, column_sql: str, system_param: str) -> str:
        return (f"list_extract(list_transform(list_filter(CAST(json_extract(CAST({column_sql} AS JSON), "
                f"'$.coding[*]') AS JSON[]), lambda c: c->>'system' = {system_param}), "
                f"lambda c: c->>'code'), 1)")

    def percentile(self, column_sql: str, p: float) -> str:
        return f"quantile_cont({column_sql}, {float(p)!r})"

    def contains(self, column_sql: str, param: str) -> str:
        return f"contains(CAST({column_sql} AS VARCHAR), {param})"

    def version_number(self, column_sql: str) -> tuple[str, str]:
        """(is the version id a whole number of at most 18 digits, that number): the record
        identity rule's test of a ``versionId`` column (see :func:`..inputs.dedupe_query`)."""
        text = f"CAST({column_sql} AS VARCHAR)"
        return f"coalesce(regexp_full_match({text}, '[0-9]{{1,18}}'), false)", f"CAST({text} AS BIGINT)"

    def mean(self, column_sql: str, typ: pa.DataType, path: str) -> str:
        # a float column is summed on several threads in an order that varies between runs: the
        # compensated sum keeps the order's rounding out of the mean (and is more accurate), so a
        # rebuild of the same input writes the same parts
        return f"favg({column_sql})" if pa.types.is_floating(typ) else f"avg({column_sql})"

    def check_quantile(self, typ: pa.DataType, path: str, what: str) -> None:
        """Refuse a quantile this engine would not compute exactly as DuckDB does (DuckDB's own: none)."""

    def values_total(self, column_sql: str) -> str:
        """A column's sum in a group as a double, beside a measure's own sum of it."""
        return f"sum(CAST({column_sql} AS DOUBLE))"

    def distinct_tuple(self, parts: list[str]) -> str:
        """Distinct non-null tuples of several columns (a person key of more than one column)."""
        known = " AND ".join(f"{p} IS NOT NULL" for p in parts)
        return f"count(DISTINCT CASE WHEN {known} THEN row({', '.join(parts)}) END)"

    def first_per_key(self, key_sql: str, columns: list[str], relation: str) -> str:
        """One row of ``relation`` per ``key_sql`` (as ``__jk``) with ``columns``: a join's right
        side. Where a key has several rows, the one of least ``columns`` (nulls last): every query
        and engine picks the same, so an input row falls in the same cell in the aggregate's query
        and in the atoms the disclosure audit counts."""
        return (f"SELECT DISTINCT ON ({key_sql}) {key_sql} AS __jk, {', '.join(columns)} FROM {relation} "
                f"ORDER BY {self.order([key_sql, *columns])}")

    def order(self, columns: list[str]) -> str:
        """ORDER BY terms giving the same row order on every engine: nulls last."""
        return ", ".join(f"{c} ASC NULLS LAST" for c in columns)

    def text_literal(self, text: str) -> str:
        """A string constant written into SQL (where a bound value cannot go: a view's text)."""
        return "'" + text.replace("'", "''") + "'"

    def year_start(self, column_sql: str, type_name: str) -> str | None:
        """The first day of the value's year, kept in the column's type (``type_name`` as the
        engine names it); a text column's first four characters when they are a year. None for
        other types."""
        if type_name.startswith(("DATE", "TIMESTAMP")):
            return f"CAST(date_trunc('year', {column_sql}) AS {type_name})"
        if type_name == "VARCHAR":
            year = f"substr({column_sql}, 1, 4)"
            return f"CASE WHEN regexp_full_match({year}, '[0-9]{{4}}') THEN {year} || '-01-01' END"
        return None

    def token(self, column_sql: str, salt: str, opening: str, closing: str) -> str:
        """``opening`` + the first 32 hex digits of sha256(salt + the value as text) + ``closing``."""
        digest = f"substr(sha256({self.text_literal(salt)} || CAST({column_sql} AS VARCHAR)), 1, 32)"
        return f"{self.text_literal(opening)} || {digest} || {self.text_literal(closing)}"

    _SQL_TYPES: dict[pa.DataType, str] = {
        pa.string(): "VARCHAR", pa.large_string(): "VARCHAR", pa.bool_(): "BOOLEAN", pa.int8(): "TINYINT",
        pa.int16(): "SMALLINT", pa.int32(): "INTEGER", pa.int64(): "BIGINT", pa.float32(): "FLOAT",
        pa.float64(): "DOUBLE", pa.date32(): "DATE", pa.binary(): "BLOB", pa.null(): "VARCHAR"}

    def sql_type(self, typ: pa.DataType) -> str:
        """The engine's name of an Arrow type (a cast of one object's column to its stream's type)."""
        if typ in self._SQL_TYPES:
            return self._SQL_TYPES[typ]
        if pa.types.is_timestamp(typ):
            return "TIMESTAMPTZ" if typ.tz is not None else "TIMESTAMP"
        if pa.types.is_decimal(typ):
            return f"DECIMAL({typ.precision}, {typ.scale})"
        raise LithotseError(f"a column of type {typ} has no DuckDB type here")

    # white space exactly as pyarrow's utf8_trim_whitespace sees it (the connectors' readers trim
    # with it): ASCII's, U+001C to U+001F, U+0085 and Unicode's separators (RE2's \p{Z}); one
    # regular expression is ten times faster here than trim(text, characters)
    _WHITE = r"[\t\n\x{0B}\f\r\x{1C}-\x{1F}\x{85}\p{Z}]"
    _TRIM = f"'^{_WHITE}+|{_WHITE}+$'"
    _TYPES = {"int64": "BIGINT", "float64": "DOUBLE", "date32": "DATE", "timestamp": "TIMESTAMP",
              "timestamptz": "TIMESTAMPTZ"}

    def native_value(self, parse: str, field_sql: str) -> str:
        """A column's value from its field's text by the rule ``parse`` (see ``NATIVE_PARSES``);
        the FHIR rules are the ones the FHIR connectors' own DuckDB reader applies."""
        if parse in ("text", "record"):
            return field_sql
        if parse == "day":
            return (f"try_cast(CASE length({field_sql}) WHEN 4 THEN {field_sql} || '-01-01' WHEN 7 THEN "
                    f"{field_sql} || '-01' ELSE left({field_sql}, 10) END AS DATE)")
        if parse == "instant":
            return f"CASE WHEN length({field_sql}) > 10 THEN try_cast({field_sql} AS TIMESTAMPTZ) END"
        if parse == "patient_reference":
            return (f"CASE WHEN starts_with({field_sql}, 'urn:uuid:') THEN NULLIF(substr({field_sql}, 10), '') "
                    f"ELSE NULLIF(regexp_extract({field_sql}, '(^|/)Patient/([^/]+)(/_history/[^/]*)?$', 2), '') END")
        # DuckDB's cast skips the ASCII white space at either end, as the trim does, so a field it
        # takes as it is (almost all) has its value without the expressions; only a field it
        # refuses is trimmed of the rest and cast again, failing as it did (-40% per field). No
        # expression appears twice: DuckDB would compute a repeated one for every row, first
        typ = self._TYPES[parse]
        return (f"coalesce(TRY_CAST({field_sql} AS {typ}), CASE WHEN regexp_full_match({field_sql}, '{self._WHITE}*') "
                f"THEN NULL ELSE CAST(regexp_replace({field_sql}, {self._TRIM}, '', 'g') AS {typ}) END)")

    @staticmethod
    def native_paths(read: NativeRead) -> list[str]:
        """Every JSON path an NDJSON read looks at, once each, in a fixed order: the index of a
        path here is its place in the one list :meth:`native_records` extracts."""
        paths: list[str] = []
        for column in read.columns:
            if isinstance(column.field, tuple):
                paths += [p for p in column.field if p not in paths]
        if read.keep is not None and read.keep[0] not in paths:
            paths.append(read.keep[0])
        return paths

    def native_column(self, read: NativeRead, column: NativeColumn, *, fragments: bool = False,
                      typed: bool = False) -> str:
        """A column's value in a record of :meth:`native_records` (``fragments``: read with
        hoisted paths, so each path's value is JSON, not yet text; ``typed``: over a scan made
        with ``typed``, where the reader has typed the fields of :meth:`typed_fields`)."""
        if read.format == "csv":
            if typed and column.field in self.typed_fields(read):
                return f"_c{column.field}"
            return self.native_value(column.parse, f"_c{column.field}")
        if column.parse == "record":
            return "__lithotse_record"
        if isinstance(column.field, int):
            raise ValueError(f"native column {column.name!r}: an NDJSON column names JSON paths, not a position")
        paths = self.native_paths(read)
        values = [self._native_field(paths.index(p) + 1, fragments) for p in column.field]
        if not values:
            return f"CAST(NULL AS {self.sql_type(NATIVE_TYPES[column.parse])})"
        if column.parse == "patient_reference":
            found = [self.native_value(column.parse, v) for v in values]
            return found[0] if len(found) == 1 else f"coalesce({', '.join(found)})"
        return self.native_value(column.parse, values[0] if len(values) == 1 else f"coalesce({', '.join(values)})")

    def native_scan(self, read: NativeRead, path: str, max_line: int, *, header: bool = False,
                    typed: bool = False) -> str:
        """DuckDB's reader of one local object, as :meth:`native_records` expects it: every field
        as text, nothing detected (CSV), or each NDJSON line's value (``json``; blank lines are
        none, as the connectors' reader counts them); ``max_line`` bytes at most a line. With
        ``header`` (CSV) the reader leaves out the file's first record itself: only right when
        that record is the read's one ``skip`` record, i.e. no empty line comes before it.
        ``typed`` (CSV): the reader types the fields of :meth:`typed_fields` itself, and fails
        the query on a value it cannot type (see there)."""
        where = self.text_literal(path)
        if read.format == "ndjson":
            return f"read_ndjson_objects({where}, compression='none', maximum_object_size={int(max_line)})"
        if header and read.skip != 1:
            raise ValueError(f"a reader leaving out the header skips one record, not {read.skip}")
        types = self.typed_fields(read) if typed else {}
        columns = ", ".join(f"'_c{i}': '{types.get(i, 'VARCHAR')}'" for i in range(read.width))
        # without a format the reader takes a date followed by anything (2024-01-05Z); with this
        # one it takes what the cast takes or refuses the value
        dates = ", dateformat='%Y-%m-%d'" if "DATE" in types.values() else ""
        return (f"read_csv({where}, columns={{{columns}}}, header={str(header).lower()}, auto_detect=false, "
                f"delim={self.text_literal(read.delimiter)}, quote={self.text_literal(read.quote)}, "
                f"escape={self.text_literal(read.quote)}, strict_mode=false, encoding='utf-8'{dates})")

    def typed_fields(self, read: NativeRead) -> dict[int, str]:
        """The CSV fields DuckDB's reader may type itself, with their type: those every column
        reading them reads as one number, date or time type. A value the reader takes is the
        value the text rule gives; one it refuses (a number padded with a no-break space, a
        date with a time) fails the query, and the caller reads the object as text instead.
        Typed by the reader, a field costs less than read as text and cast afterwards."""
        rules: dict[int, set[str]] = {}
        for column in read.columns:
            if isinstance(column.field, int):
                rules.setdefault(column.field, set()).add(column.parse)
        return {i: self._TYPES[rule] for i, (rule, *others) in ((i, list(r)) for i, r in rules.items())
                if not others and rule in self._TYPES}

    @staticmethod
    def _native_field(slot: int, fragments: bool) -> str:
        """The text of the ``slot``-th path's value in ``__lithotse_j``."""
        return f"json_extract_string(__lithotse_j[{slot}], '$')" if fragments else f"__lithotse_j[{slot}]"

    def native_records(self, read: NativeRead, relation: str, hoisted: Sequence[str] = (), *,
                       text: bool = False) -> str:
        """The records of ``relation`` (one row per record of the object, fields ``_c0``…, in file
        order) as the connector counts them, numbered from 0 in ``__lithotse_n``. DuckDB's CSV
        reader already ends records at any line break and leaves out empty lines; an NDJSON line
        is parsed once, for every path the columns read (``__lithotse_j``) and, in the same
        parse, the JSONPaths ``hoisted`` (a view's, see ``sof.compile_view_hoisted``), whose
        JSON values are the columns ``__lithotse_h1``…; the columns' values are then JSON too,
        read as text each on its own (a small parse of a short value, not of the line). With
        ``text``, every value is extracted as text instead (``HoistedView.as_text``)."""
        numbered = "row_number() OVER () - 1 AS __lithotse_n"
        if read.format == "ndjson":
            own = self.native_paths(read)
            paths = ", ".join([*(self.text_literal("$." + ".".join(f'"{part}"' for part in p.split(".")))
                                 for p in own), *(self.text_literal(p) for p in hoisted)])
            fragments = bool(hoisted) and not text
            extract = "json_extract" if fragments else "json_extract_string"
            values = "".join(f", __lithotse_j[{len(own) + n}] AS __lithotse_h{n}" for n in range(1, len(hoisted) + 1))
            parsed = (f"SELECT CAST(json AS VARCHAR) AS __lithotse_record, {extract}(json, [{paths}]) "
                      f"AS __lithotse_j FROM {relation}")
            if read.keep is not None:
                path, value = read.keep
                # the filter stands above a window (numbering the lines), which it is not moved
                # below: moved down to the scan, it would parse each line once more
                at = own.index(path) + 1
                parsed = (f"SELECT __lithotse_record, __lithotse_j FROM (SELECT *, row_number() OVER () AS "
                          f"__lithotse_line FROM ({parsed})) "
                          f"WHERE {self._native_field(at, fragments)} = {self.text_literal(value)}")
            return f"SELECT *{values}, {numbered} FROM ({parsed})"
        return f"SELECT *, {numbered} FROM {relation}"


DUCKDB = Dialect()


class SparkDialect(Dialect):
    """Spark SQL (Spark Connect's ``spark.sql(sql, args={...})``, named parameter markers), with
    every expression giving what DuckDB's gives, or a refusal naming the spec field."""

    name = "spark"

    def version_number(self, column_sql: str) -> tuple[str, str]:
        text = f"CAST({column_sql} AS STRING)"
        return (f"coalesce(length({text}) BETWEEN 1 AND 18 AND translate({text}, '0123456789', '') = '', false)",
                f"CAST({text} AS BIGINT)")

    def quote(self, ident: str) -> str:
        """Backticks around any name, its own backticks doubled."""
        if "\x00" in ident:
            raise SpecError("column", f"{ident!r}: a name cannot hold a NUL character")
        return "`" + ident.replace("`", "``") + "`"

    def row_identity(self, alias: str) -> str:
        return f"xxhash64(struct({self.quote(alias)}.*))"

    def from_duckdb(self, sql: str) -> str:
        """DuckDB's double-quoted names in backticks (Spark reads double quotes as text), its
        text's doubled quotes escaped with a backslash (Spark joins 'it''s' into 'its'), and its
        ``count_star()`` (how it writes ``count(*)`` back) as ``count(*)``."""
        out, i = [], 0
        while i < len(sql):
            char = sql[i]
            if char in "'\"":
                end = i + 1
                while end < len(sql) and not (sql[end] == char and sql[end + 1:end + 2] != char):
                    end += 2 if sql[end] == char else 1
                quoted = sql[i:end + 1]
                text = quoted[1:-1].replace(char * 2, char)
                out.append(self.quote(text) if char == '"' else
                           "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'")
                i = end + 1
            elif sql.startswith(COUNT_STAR, i) and not (i and (sql[i - 1].isalnum() or sql[i - 1] in "_$")):
                out.append("count(*)")
                i += len(COUNT_STAR)
            else:
                out.append(char)
                i += 1
        return "".join(out)

    def param(self, number: int) -> str:
        """Named markers (``:p1``): a value may appear in the SELECT before the WHERE that bound it first."""
        return f":p{number}"

    def local_day(self, column_sql: str, typ: pa.DataType, tz_param: str) -> str:
        if pa.types.is_date(typ):
            return f"CAST({column_sql} AS DATE)"
        if pa.types.is_timestamp(typ):
            if typ.tz is not None:  # an instant; the session's zone is UTC
                return f"CAST(from_utc_timestamp({column_sql}, {tz_param}) AS DATE)"
            return f"CAST({column_sql} AS DATE)"
        if _is_text(typ):
            # Spark's cast also takes "2024" or "2024-01" as a date; DuckDB's needs year, month and day
            text = f"substr({column_sql}, 1, 10)"
            return (f"CASE WHEN {text} RLIKE '^-?[0-9]{{4,}}-[0-9]{{1,2}}-[0-9]{{1,2}}$' "
                    f"THEN try_cast({text} AS DATE) END")
        if pa.types.is_integer(typ):  # a year: its first day
            return f"CASE WHEN {column_sql} BETWEEN 1 AND 9999 THEN make_date(CAST({column_sql} AS INT), 1, 1) END"
        raise TypeError(str(typ))

    def full_years(self, start_sql: str, end_sql: str) -> str:
        # months_between counts whole months as DuckDB's date_sub does (the last days of two months
        # are a whole month apart); the cast truncates toward zero, as date_sub does
        return f"CAST(months_between({end_sql}, {start_sql}, false) / 12 AS INT)"

    def code_from_concept(self, column_sql: str, system_param: str) -> str:
        concept = f"from_json({column_sql}, 'coding ARRAY<STRUCT<system: STRING, code: STRING>>')"
        return (f"try_element_at(transform(filter({concept}.coding, c -> c.system = {system_param}), "
                f"c -> c.code), 1)")

    def percentile(self, column_sql: str, p: float) -> str:
        # exact, interpolated like DuckDB's quantile_cont (percentile_approx is not)
        return f"percentile({column_sql}, {float(p)!r})"

    def check_quantile(self, typ: pa.DataType, path: str, what: str) -> None:
        if pa.types.is_decimal(typ):
            raise SpecError(path, f"{what} of a decimal column cannot be computed on Spark exactly as on DuckDB "
                                  f"(DuckDB keeps the decimal, Spark's percentile gives a double); build it "
                                  f"with --engine duckdb")

    def contains(self, column_sql: str, param: str) -> str:
        return f"contains(CAST({column_sql} AS STRING), {param})"

    def mean(self, column_sql: str, typ: pa.DataType, path: str) -> str:
        if pa.types.is_decimal(typ):
            # DuckDB divides the exact decimal sum as a double; Spark's avg would round to scale + 4
            return f"CAST(sum({column_sql}) AS DOUBLE) / count({column_sql})"
        return f"avg({column_sql})"

    def values_total(self, column_sql: str) -> str:
        # Sail names a sum by its column, casts left out: beside a measure's sum(x), a
        # sum(CAST(x AS DOUBLE)) was a second field "sum(l.x)" and the plan failed
        return f"sum(CASE WHEN {column_sql} IS NOT NULL THEN CAST({column_sql} AS DOUBLE) END)"

    def distinct_tuple(self, parts: list[str]) -> str:
        # Spark's count(DISTINCT a, b) leaves out the tuples holding a null, as the CASE above does
        return f"count(DISTINCT {', '.join(parts)})"

    def first_per_key(self, key_sql: str, columns: list[str], relation: str) -> str:
        picked = ", ".join(columns)
        return (f"SELECT __jk, {picked} FROM (SELECT {key_sql} AS __jk, {picked}, row_number() OVER "
                f"(PARTITION BY {key_sql} ORDER BY {self.order(columns)}) AS __first FROM {relation}) "
                "WHERE __first = 1")


    def text_literal(self, text: str) -> str:
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

    def year_start(self, column_sql: str, type_name: str) -> str | None:
        if type_name in ("date", "timestamp", "timestamp_ntz"):
            return f"CAST(date_trunc('YEAR', {column_sql}) AS {type_name.upper()})"
        if type_name == "string":
            year = f"substr({column_sql}, 1, 4)"
            return f"CASE WHEN {year} RLIKE '^[0-9]{{4}}$' THEN concat({year}, '-01-01') END"
        return None

    def token(self, column_sql: str, salt: str, opening: str, closing: str) -> str:
        digest = f"substr(sha2(concat({self.text_literal(salt)}, CAST({column_sql} AS STRING)), 256), 1, 32)"
        return f"concat({self.text_literal(opening)}, {digest}, {self.text_literal(closing)})"

    def sql_type(self, typ: pa.DataType) -> str:
        simple = {pa.string(): "STRING", pa.large_string(): "STRING", pa.bool_(): "BOOLEAN", pa.int8(): "TINYINT",
                  pa.int16(): "SMALLINT", pa.int32(): "INT", pa.int64(): "BIGINT", pa.float32(): "FLOAT",
                  pa.float64(): "DOUBLE", pa.date32(): "DATE", pa.binary(): "BINARY", pa.null(): "STRING"}
        if typ in simple:
            return simple[typ]
        if pa.types.is_timestamp(typ):
            return "TIMESTAMP" if typ.tz is not None else "TIMESTAMP_NTZ"
        if pa.types.is_decimal(typ):
            return f"DECIMAL({typ.precision}, {typ.scale})"
        raise LithotseError(f"a column of type {typ} cannot be given to Spark")

    # white space as pyarrow's utf8_trim_whitespace sees it (Java's \s is ASCII only; \p{Z} and
    # U+0085 add the Unicode ones); the regular expression is one both Java's and Rust's engines read alike
    _TRIM = "'^[\\\\s\\\\p{Z}\\\\x{85}]+|[\\\\s\\\\p{Z}\\\\x{85}]+$'"
    _TYPES = {"int64": "BIGINT", "float64": "DOUBLE", "date32": "DATE", "timestamp": "TIMESTAMP_NTZ",
              "timestamptz": "TIMESTAMP"}

    def native_value(self, parse: str, field_sql: str) -> str:
        if parse in ("text", "record"):
            return field_sql
        if parse == "day":
            return (f"CAST(CASE length({field_sql}) WHEN 4 THEN concat({field_sql}, '-01-01') WHEN 7 THEN "
                    f"concat({field_sql}, '-01') ELSE substr({field_sql}, 1, 10) END AS DATE)")
        if parse == "instant":
            return f"CASE WHEN length({field_sql}) > 10 THEN CAST({field_sql} AS TIMESTAMP) END"
        if parse == "patient_reference":
            return (f"CASE WHEN substr({field_sql}, 1, 9) = 'urn:uuid:' THEN NULLIF(substr({field_sql}, 10), '') "
                    f"ELSE NULLIF(regexp_extract({field_sql}, '(^|/)Patient/([^/]+)(/_history/[^/]*)?$', 2), '') END")
        text = f"NULLIF(regexp_replace({field_sql}, {self._TRIM}, ''), '')"
        if parse == "timestamptz":
            # Arrow reads 10:00Z and 10:00+01:00 without seconds; Spark's cast needs them
            text = (f"regexp_replace({text}, '^([0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}[T ][0-9]{{2}}:[0-9]{{2}})([Z+-])', "
                    f"'$1:00$2')")
        return f"CAST({text} AS {self._TYPES[parse]})"

    def native_column(self, read: NativeRead, column: NativeColumn, *, fragments: bool = False,
                      typed: bool = False) -> str:
        if fragments or typed:
            raise ValueError("Spark reads no hoisted view values, and every CSV field as text")
        if read.format == "csv":
            return self.native_value(column.parse, f"_c{column.field}")
        if column.parse == "record":
            return "__lithotse_record"
        if isinstance(column.field, int):
            raise ValueError(f"native column {column.name!r}: an NDJSON column names JSON paths, not a position")
        values = [f"get_json_object(__lithotse_record, {self.text_literal('$.' + path)})" for path in column.field]
        if not values:
            return f"CAST(NULL AS {self.sql_type(NATIVE_TYPES[column.parse])})"
        if column.parse == "patient_reference":
            found = [self.native_value(column.parse, v) for v in values]
            return found[0] if len(found) == 1 else f"coalesce({', '.join(found)})"
        return self.native_value(column.parse, values[0] if len(values) == 1 else f"coalesce({', '.join(values)})")

    def native_records(self, read: NativeRead, relation: str, hoisted: Sequence[str] = (), *,
                       text: bool = False) -> str:
        if hoisted:
            raise ValueError("Spark reads no hoisted view values")
        numbered = "row_number() OVER (ORDER BY __lithotse_id) - 1 AS __lithotse_n"
        if read.format == "ndjson":
            # each line is read as one field (no delimiter or quote a JSON line can hold)
            record = "regexp_replace(_c0, '^[ \\t\\r\\n]+|[ \\t\\r\\n]+$', '')"
            kept = ""
            if read.keep is not None:
                path, value = read.keep
                kept = (f" AND get_json_object(__lithotse_record, {self.text_literal('$.' + path)}) = "
                        f"{self.text_literal(value)}")
            return (f"SELECT __lithotse_record, {numbered} FROM (SELECT {record} AS __lithotse_record, "
                    f"monotonically_increasing_id() AS __lithotse_id FROM {relation}) "
                    f"WHERE __lithotse_record <> ''{kept}")
        # Spark's multi-line CSV reader ends records where the file's first line ends (its line
        # separator is detected once): of a CRLF line in an LF file the CR stays in the last
        # field, and an empty CRLF line becomes a record holding only a CR. Arrow ends records at
        # any of the three, so the CR is dropped here and such a record is no record.
        fields = [f"_c{i}" for i in range(read.width)]
        last = fields[-1]
        cr = "'\\r'"
        cleaned = [f"NULLIF({f}, '') AS {f}" for f in fields[:-1]]
        cleaned.append(f"NULLIF(CASE WHEN substr({last}, -1) = {cr} THEN substr({last}, 1, length({last}) - 1) "
                       f"ELSE {last} END, '') AS {last}")
        blank = f"{fields[0]} = {cr}" + "".join(f" AND {f} IS NULL" for f in fields[1:])
        return (f"SELECT *, {numbered} FROM (SELECT {', '.join(cleaned)}, monotonically_increasing_id() AS "
                f"__lithotse_id FROM {relation} WHERE NOT coalesce({blank}, false))")


SPARK = SparkDialect()
DIALECTS: dict[str, Dialect] = {"duckdb": DUCKDB, "spark": SPARK}


@dataclass(frozen=True)
class Span:
    """A landing of an object as a native read sees it: rows whose date lies in ``range`` (all
    rows, without a date field or a bound) belong to it, unless an earlier span holds them."""

    landing_id: str
    landed_at: str
    date_field: str | None
    range: DateRange


HOISTED = "__h"
"""The columns of a natively read NDJSON object with the JSON values of a view's hoisted paths are
this and their number from 1 (``sof.compile.HoistedView.columns``)."""


def native_object_sql(read: NativeRead, relation: str, spans: list[Span], kept: list[str], *, timezone: str,
                      dialect: Dialect, hoisted: Sequence[str] = (), skipped: bool = False,
                      needed: Sequence[str] | None = None, text: bool = False, typed: bool = False) -> str:
    """One object's rows from its raw records (``relation``, see :meth:`Dialect.native_records`) as
    :func:`~lithotse_desktop.raw.reader.read_object` gives them: the connector's columns ``kept``,
    only rows inside a span, each naming the first span holding it (``_landing_id``, ``_landed_at``)
    and its position among the object's rows (``_row``, counted before the range is applied);
    with ``hoisted`` JSONPaths (NDJSON only), their values from the same parse (see :data:`HOISTED`),
    as JSON or, with ``text``, as text.
    ``skipped``: the relation has left out the ``skip`` records already (see
    :meth:`Dialect.native_scan`). ``needed``: the only columns the caller reads (with the spans'
    date fields); the paths of the others are not extracted from each line, and they are null.
    ``typed``: ``relation`` is a CSV scan made with ``typed`` (:meth:`Dialect.native_scan`), which
    leaves no record out but the header."""
    q = dialect.quote
    hoisted = hoisted if read.format == "ndjson" else ()
    if needed is not None and read.format == "ndjson":
        wanted = {*needed, *(s.date_field for s in spans if s.date_field)}
        read = replace(read, columns=tuple(c if c.name in wanted else replace(c, field=()) for c in read.columns))
    names = [q(f"{HOISTED}{n}") for n in range(1, len(hoisted) + 1)]
    carried = "".join(f", __lithotse_h{n} AS {name}" for n, name in enumerate(names, 1))
    schema = read.schema()
    skip = 0 if skipped else read.skip
    bounds = [f"__lithotse_n >= {skip}"] if skip else []
    if read.limit is not None:
        bounds.append(f"__lithotse_n < {skip + read.limit}")
    inside = " AND ".join(bounds)
    # the header and the rows under the data are not cast at all (an optimizer may move the
    # filter above the casts, so the CASE guards each one). Without bounds the rows need no
    # number but their _row: a query not reading it leaves the numbering out, and then reads
    # the object on every thread rather than in order on one
    fragments = bool(hoisted) and not text
    if typed and inside:
        raise ValueError("a typed read cannot leave records out: they would be typed too")
    values = ", ".join(f"{_guarded(dialect.native_column(read, c, fragments=fragments, typed=typed), inside)} "
                       f"AS {q(c.name)}" for c in read.columns)
    records = dialect.native_records(read, relation, hoisted, text=text)
    rows = (f"SELECT {values}, CAST(__lithotse_n - {skip} AS BIGINT) AS __lithotse_row{carried} "
            f"FROM ({records})" + (f" WHERE {inside}" if inside else ""))
    owners = []
    for i, span in enumerate(spans):
        if not span.date_field or not span.range.bounded:
            owners.append(f"WHEN true THEN {i}")
            break
        day = dialect.local_day(q(span.date_field), schema.field(span.date_field).type,
                                dialect.text_literal(timezone))
        limits = []
        if span.range.start is not None:
            limits.append(f"{day} >= DATE '{span.range.start.isoformat()}'")
        if span.range.end is not None:
            limits.append(f"{day} <= DATE '{span.range.end.isoformat()}'")
        owners.append(f"WHEN coalesce({' AND '.join(limits)}, false) THEN {i}")
    used = spans[:len(owners)]
    landing = " ".join(f"WHEN {i} THEN {dialect.text_literal(s.landing_id)}" for i, s in enumerate(used))
    landed_at = " ".join(f"WHEN {i} THEN {dialect.text_literal(s.landed_at)}" for i, s in enumerate(used))
    columns = "".join(f"{q(c)}, " for c in kept)
    return (f"SELECT {columns}CASE __lithotse_owner {landing} END AS _landing_id, "
            f"CASE __lithotse_owner {landed_at} END AS _landed_at, __lithotse_row AS _row"
            f"{''.join(', ' + name for name in names)} "
            f"FROM (SELECT *, CASE {' '.join(owners)} END AS __lithotse_owner FROM ({rows})) "
            f"WHERE __lithotse_owner IS NOT NULL")


def _guarded(sql: str, condition: str) -> str:
    """``sql`` only where ``condition`` holds (no condition: everywhere)."""
    return f"CASE WHEN {condition} THEN {sql} END" if condition else sql


@dataclass
class Compiled:
    sql: str
    params: list[Any] = field(default_factory=list)
    dimensions: list[str] = field(default_factory=list)
    measures: list[str] = field(default_factory=list)
    has_period: bool = False


class _Params:
    def __init__(self, dialect: Dialect) -> None:
        self.values: list[Any] = []
        self.dialect = dialect

    def add(self, value: Any) -> str:
        self.values.append(value)
        return self.dialect.param(len(self.values))


def _is_numeric(typ: pa.DataType) -> bool:
    return pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ)


def _is_text(typ: pa.DataType) -> bool:
    return pa.types.is_string(typ) or pa.types.is_large_string(typ)


def _is_day(typ: pa.DataType) -> bool:
    return pa.types.is_date(typ) or pa.types.is_timestamp(typ)


def _column_type(schema: pa.Schema, column: str, path: str) -> pa.DataType:
    idx = schema.get_field_index(column)
    if idx < 0:
        known = ", ".join(schema.names)
        raise SpecError(path, f"unknown column {column!r}; the input has: {known}")
    return schema.field(idx).type


def dedupe_sql(relation: str, key: list[str], order: list[str], dialect: Dialect = DUCKDB,
               columns: list[str] | None = None) -> str:
    """Keep one row per key: the newest by the ``order`` expressions (already with DESC). The
    rows keep every column, or only ``columns`` (Spark SQL has no ``* EXCLUDE``)."""
    q = dialect.quote
    parts = ", ".join(q(k) for k in key)
    order_sql = ", ".join(order) or "1"
    kept = "* EXCLUDE (__rank)" if columns is None else ", ".join(q(c) for c in columns)
    return (f"SELECT {kept} FROM (SELECT *, row_number() OVER (PARTITION BY {parts} "
            f"ORDER BY {order_sql}) AS __rank FROM {relation}) WHERE __rank = 1")


@dataclass
class _Frame:
    """The rows an aggregate reads: its FROM (input, and the join), WHERE and day expression."""

    col: Any
    from_sql: str
    where: list[str]
    day_sql: str | None
    join_sql: str = ""
    """The join's part of ``from_sql`` (none without a join)."""


def _frame(spec: dict, schemas: dict[str, pa.Schema], timezone: str, params: _Params,
           dialect: Dialect, relation: str | None = None, joined: str = "joined", right_alias: str = "r") -> _Frame:
    """``relation``: SQL read in place of the ``input`` relation, with ``schemas["input"]``'s columns;
    ``joined``: the relation (and schema) the join reads, taken as ``right_alias`` (the atoms'
    query joins several inputs in one FROM, see :func:`.atoms.compile_atoms`)."""
    q = dialect.quote
    schema = schemas["input"]
    base = relation or q("input")
    columns: dict[str, tuple[str, pa.DataType]] = {n: (f"l.{q(n)}", schema.field(n).type)
                                                   for n in schema.names}
    join_sql = ""
    if "join" in spec:
        join = spec["join"]
        right = schemas[joined]
        left_col = join["on"]["left"]
        _column_type(schema, left_col, "join.on.left")
        right_col = join["on"]["right"]
        _column_type(right, right_col, "join.on.right")
        picked = []
        for i, name in enumerate(join["columns"]):
            columns[name] = (f"{right_alias}.{q(name)}", _column_type(right, name, f"join.columns[{i}]"))
            picked.append(q(name))
        right_rows = dialect.first_per_key(q(right_col), picked, q(joined))
        join_sql = f" LEFT JOIN ({right_rows}) AS {right_alias} ON l.{q(left_col)} = {right_alias}.__jk"
    from_sql = f"{base} AS l{join_sql}"

    def col(name: str, path: str) -> tuple[str, pa.DataType]:
        if name not in columns:
            known = ", ".join(columns)
            raise SpecError(path, f"unknown column {name!r}; the input has: {known}")
        return columns[name]

    where: list[str] = []
    day_sql = None
    ages = any(isinstance(d, dict) and "age_band" in d for d in spec.get("group_by", []))
    if spec.get("date_field") and not (spec.get("grain", "none") != "none" or spec.get("from") or spec.get("to")
                                       or ages):
        _date_column(spec, col)  # read for nothing here, but it must still be a date
    elif spec.get("date_field"):
        # only where the query uses it: its time zone is a bound parameter, and DuckDB refuses
        # a parameter the query never reads
        day_sql = day_expression(spec, col, timezone, params, dialect)
        if spec.get("grain", "none") != "none":
            # a row without a day has no period: tested on the period, DuckDB keeps the filter
            # above the input's typed columns rather than computing the day a second time in it
            where.append(f"{dialect.period(spec['grain'], day_sql)} IS NOT NULL")
        if spec.get("from"):
            where.append(f"{day_sql} >= CAST({params.add(spec['from'])} AS DATE)")
        if spec.get("to"):
            where.append(f"{day_sql} <= CAST({params.add(spec['to'])} AS DATE)")
    for i, f in enumerate(spec.get("filters", [])):
        sql, _typ = col(f["column"], f"filters[{i}].column")
        op, value = f["op"], f.get("value")
        if op == "is null":
            where.append(f"{sql} IS NULL")
        elif op == "is not null":
            where.append(f"{sql} IS NOT NULL")
        elif op in ("in", "not in"):
            marks = ", ".join(params.add(v) for v in value)
            where.append(f"{sql} {'NOT IN' if op == 'not in' else 'IN'} ({marks})")
        elif op == "between":
            where.append(f"{sql} BETWEEN {params.add(value[0])} AND {params.add(value[1])}")
        elif op == "contains":
            where.append(dialect.contains(sql, params.add(value)))
        else:
            where.append(f"{sql} {'<>' if op == '!=' else op} {params.add(value)}")
    return _Frame(col, from_sql, where, day_sql, join_sql)


def _dimension(d: Any, path: str, frame: _Frame, timezone: str, params: _Params, dialect: Dialect) -> str:
    """The SQL of one ``group_by`` entry."""
    col = frame.col
    if isinstance(d, str) or "column" in d:
        sql, _ = col(d if isinstance(d, str) else d["column"], path)
        return sql
    if "age_band" in d:
        birth_sql, btyp = col(d["age_band"]["birth_date"], f"{path}.age_band.birth_date")
        if frame.day_sql is None:
            raise SpecError(f"{path}.age_band", "needs the spec's date_field (age at the event date)")
        if not (_is_day(btyp) or pa.types.is_string(btyp)):
            raise SpecError(f"{path}.age_band.birth_date", f"is {btyp}, not a date")
        birth_day = dialect.local_day(birth_sql, btyp, params.add(timezone) if
                                      pa.types.is_timestamp(btyp) and btyp.tz else "")
        return _age_band(dialect.full_years(birth_day, frame.day_sql), d["age_band"].get("bands", [0, 18, 45, 65, 85]))
    sql, ctyp = col(d["code"]["column"], f"{path}.code.column")
    if not _is_text(ctyp):
        raise SpecError(f"{path}.code.column", f"is {ctyp}, not a CodeableConcept (JSON text)")
    return dialect.code_from_concept(sql, params.add(d["code"]["system"]))


def people_sql(person_key: list[str] | None, col: Any, dialect: Dialect = DUCKDB) -> str:
    """Distinct people of a cell, a row whose person key is null counted as a person of its own
    (its person is not known, not no one: a FHIR reference by identifier only, or a conditional
    one, names a patient the key cannot give); without a person key, the records."""
    if not person_key:
        return "count(*)"
    parts = [col(name, "person_key")[0] for name in person_key]
    if len(parts) == 1:
        return f"(count(DISTINCT {parts[0]}) + count(*) - count({parts[0]}))"
    unknown = " OR ".join(f"{p} IS NULL" for p in parts)
    return f"({dialect.distinct_tuple(parts)} + sum(CASE WHEN {unknown} THEN 1 ELSE 0 END))"


FLAG_WORDS = ("true", "false", "t", "f", "yes", "no", "y", "n", "0", "1")
"""Text a yes/no column is written in (a joined or text input keeps ``true`` as text)."""


def _flag_test(sql: str, typ: pa.DataType) -> str | None:
    """SQL true where a value is one a flag holds (0 or 1, true or false, ``yes``/``no`` as
    text), for :data:`ZERO_ONE`; None for other types."""
    if _is_numeric(typ):
        return f"{sql} IN (0, 1)"
    if pa.types.is_boolean(typ):
        return f"{sql} IS NOT NULL"
    if _is_text(typ):
        words = ", ".join(f"'{w}'" for w in FLAG_WORDS)
        return f"lower(trim({sql})) IN ({words})"
    return None


def _two_words(sql: str, typ: pa.DataType) -> tuple[str, str, str]:
    """:data:`TWO_VALUE_PARTS` of a column that is not a number: text holding two values in a cell
    (``Ja``/``Nein``, ``HIV``/``none``) has its least or greatest say who holds the other, and its
    rows cannot be counted by value in the same pass: both sides are taken as 1, so the cell is
    hidden. Other types (dates) give only the rows holding a value."""
    held = f"count({sql})"
    if not _is_text(typ):
        return "CAST(NULL AS BIGINT)", "CAST(NULL AS BIGINT)", held
    two = f"CASE WHEN count(DISTINCT {sql}) = 2 THEN 1 END"
    return two, two, held


def _two_value_counts(sql: str, dialect: Dialect) -> tuple[str, str, str]:
    """SQL of :data:`TWO_VALUE_PARTS` over a numeric column. A cell holds two values a < b when
    the sum of (x - a)(b - x) over its rows is 0 (each term is 0 at a or b and positive between),
    told from its sums and sums of squares within their rounding (a count of distinct values cost
    a sixth of a 5M-row build); the rows at b are then the sum less the count times a, over
    b - a. Where doubles cannot give that to the row (values near 2**53, two values a rounding
    apart) both are 1, so the cell is hidden; values beyond about 1e150 or below 1e-145 are taken
    as two values."""
    value = f"CAST({sql} AS DOUBLE)"
    lowest, highest, held = f"CAST(min({sql}) AS DOUBLE)", f"CAST(max({sql}) AS DOUBLE)", f"count({sql})"
    total, squares = dialect.values_total(sql), f"sum({value} * {value})"
    gap = f"({highest} - {lowest})"
    largest = f"greatest(abs({lowest}), abs({highest}))"
    spread = f"(({lowest} + {highest}) * {total} - {squares} - {held} * {lowest} * {highest})"
    rows = f"CAST({held} AS DOUBLE)"
    # the rounding of sums of n terms: up to n times each term's last bits; two values that are
    # one double (10**17 and 10**17 + 1) have no spread, and no gap to count them by
    no_spread = f"abs({spread}) <= {rows} * {rows} * {largest} * {largest} * {2.0 ** -48!r}"
    # beyond about 1e150 the squares overflow and the spread is no number, below about 1e-145
    # they are lost to underflow (the tolerance is 0): taken as two values
    squared = f"{rows} * {largest} * {largest} < 1e300 AND {largest} * {largest} > 1e-290"
    two = f"min({sql}) < max({sql}) AND (NOT ({squared}) OR {no_spread})"
    above = f"(({total} - {held} * {lowest}) / {gap})"
    sure = f"{gap} > 0 AND {rows} * {largest} * {2.0 ** -50!r} < 0.25 * {gap} AND abs({above}) < 1e15"
    high = f"CASE WHEN NOT ({two}) THEN NULL WHEN {sure} THEN CAST(round({above}) AS BIGINT) ELSE 1 END"
    low = f"CASE WHEN NOT ({two}) THEN NULL WHEN {sure} THEN {held} - CAST(round({above}) AS BIGINT) ELSE 1 END"
    return high, low, held


def compile_aggregate(spec: dict, schemas: dict[str, pa.Schema], *, timezone: str = "UTC",
                      periods: list[Any] | None = None, dialect: Dialect = DUCKDB,
                      person_key: list[str] | None = None, zero_one: bool = False) -> Compiled:
    """The aggregate's SELECT over relations ``input`` (and ``joined``), grouped per period,
    with the internal columns ``__n`` (records) and ``__people`` (distinct people, or records
    without a ``person_key``) that suppression decides on; with ``zero_one``, the
    :data:`ZERO_ONE` columns of its numeric measures."""
    q = dialect.quote
    params = _Params(dialect)
    frame = _frame(spec, schemas, timezone, params, dialect)
    col, from_sql, where, day_sql = frame.col, frame.from_sql, frame.where, frame.day_sql

    select: list[str] = []
    group: list[str] = []
    dims: list[str] = []
    grain = spec.get("grain", "none")
    if grain != "none":
        if day_sql is None:  # validate_spec refuses this already
            raise SpecError("date_field", "is required")
        select.append(f"{dialect.period(grain, day_sql)} AS {q(PERIOD)}")
        group.append(q(PERIOD))
        if periods is not None:
            marks = ", ".join(f"CAST({params.add(str(p))} AS DATE)" for p in periods) or "NULL"
            where.append(f"{dialect.period(grain, day_sql)} IN ({marks})")
    for i, d in enumerate(spec.get("group_by", [])):
        path = f"group_by[{i}]"
        alias = dimension_alias(d)
        expr = _dimension(d, path, frame, timezone, params, dialect)
        select.append(f"{expr} AS {q(alias)}")
        group.append(q(alias))
        dims.append(alias)
    measures = []
    two_valued: set[str] = set()
    for i, m in enumerate(spec["measures"]):
        path = f"measures[{i}]"
        fn = m["fn"]
        if "column" in m:
            sql, typ = col(m["column"], f"{path}.column")
            if fn in ("sum", "mean", "median", "percentile") and not _is_numeric(typ):
                raise SpecError(f"{path}.column", f"{fn} needs a number; {m['column']!r} is {typ}")
        if fn == "count":
            expr = f"count({sql})" if "column" in m else "count(*)"
        elif fn == "count_distinct":
            expr = f"count(DISTINCT {sql})"
        elif fn == "mean":
            expr = dialect.mean(sql, typ, path)
        elif fn == "median":
            dialect.check_quantile(typ, f"{path}.column", f"median {m['as']!r}")
            expr = dialect.percentile(sql, 0.5)
        elif fn == "percentile":
            dialect.check_quantile(typ, f"{path}.column", f"percentile {m['as']!r}")
            expr = dialect.percentile(sql, m["p"])
        elif fn == "sum" and pa.types.is_integer(typ):
            expr = f"CAST(sum({sql}) AS BIGINT)"
        else:
            expr = f"{fn}({sql})"
        select.append(f"{expr} AS {q(m['as'])}")
        measures.append(m["as"])
        if zero_one and "column" in m and fn not in ("count", "count_distinct"):
            flag = _flag_test(sql, typ)
            if flag is not None:
                select.append(f"max(CASE WHEN {flag} THEN 0 WHEN {sql} IS NOT NULL THEN 1 END) "
                              f"AS {q(f'{ZERO_ONE}{i}')}")
        if zero_one and fn in VALUE_MEASURES and m["column"] not in two_valued:
            two_valued.add(m["column"])
            parts = _two_value_counts(sql, dialect) if _is_numeric(typ) else _two_words(sql, typ)
            for suffix, expr in zip(TWO_VALUE_PARTS, parts, strict=True):
                select.append(f"{expr} AS {q(f'{ZERO_ONE}{i}{suffix}')}")
        if zero_one and fn == "count_distinct":
            select.append(f"count({sql}) AS {q(f'{ZERO_ONE}{i}{PRESENT}')}")
    select.append(f"count(*) AS {q(CELL_COUNT)}")
    select.append(f"{people_sql(person_key, col, dialect)} AS {q(PEOPLE)}")
    sql = f"SELECT {', '.join(select)} FROM {from_sql}"
    if where:
        sql += " WHERE " + " AND ".join(f"({w})" for w in where)
    if group:
        # by place, not by name: a name is bound to the input's column of that name before the
        # select list's, so a banded dimension named as its column grouped by the raw values
        places = _places(group)
        sql += f" GROUP BY {', '.join(places)} ORDER BY {dialect.order(places)}"
    return Compiled(sql, params.values, dims, measures, grain != "none")


def _places(group: list[str]) -> list[str]:
    """The ordinals of the select list's first ``len(group)`` items, which are the group keys."""
    return [str(i) for i in range(1, len(group) + 1)]


def compile_difference(outer: dict, inner: dict, schemas: dict[str, pa.Schema], *, dims: list[Any],
                       grain: str, timezone: str = "UTC", person_key: list[str] | None = None,
                       dialect: Dialect = DUCKDB, inner_joined: str | None = None) -> Compiled:
    """Records and people of ``outer``'s rows that ``inner`` leaves out, per cell of their common
    margin (``period`` at ``grain``, then the outer's ``dims`` as ``__k0``, ``__k1``...). Both
    read the same input. An inner that joins otherwise than the outer names the relation its join
    reads (``inner_joined``): a join keeps one joined row per input row, so the outer's rows are
    the same with the inner's join beside its own."""
    q = dialect.quote
    params = _Params(dialect)
    frame = _frame(outer, schemas, timezone, params, dialect)
    if inner_joined is None:
        kept = _frame(inner, schemas, timezone, params, dialect)
    else:
        kept = _frame(inner, schemas, timezone, params, dialect, joined=inner_joined, right_alias="r1")
        frame = replace(frame, from_sql=frame.from_sql + kept.join_sql)
    select: list[str] = []
    group: list[str] = []
    if grain != "none":
        if frame.day_sql is None:
            raise SpecError("date_field", "is required")
        select.append(f"{dialect.period(grain, frame.day_sql)} AS {q(PERIOD)}")
        group.append(q(PERIOD))
    for i, d in enumerate(dims):
        select.append(f"{_dimension(d, f'group_by[{i}]', frame, timezone, params, dialect)} AS {q(f'__k{i}')}")
        group.append(q(f"__k{i}"))
    select.append(f"count(*) AS {q(CELL_COUNT)}")
    select.append(f"{people_sql(person_key, frame.col, dialect)} AS {q(PEOPLE)}")
    inside = " AND ".join(f"({w})" for w in kept.where) or "true"
    where = [*frame.where, f"NOT coalesce(({inside}), false)"]
    sql = f"SELECT {', '.join(select)} FROM {frame.from_sql} WHERE " + " AND ".join(f"({w})" for w in where)
    if group:
        sql += f" GROUP BY {', '.join(_places(group))}"
    return Compiled(sql, params.values)


def day_expression(spec: dict, col: Any, timezone: str, params: _Params,
                   dialect: Dialect = DUCKDB) -> str:
    """The calendar day of a record (see lithotse_desktop.dates) as SQL over its date field."""
    sql, typ = _date_column(spec, col)
    tz = params.add(timezone) if pa.types.is_timestamp(typ) and typ.tz else ""
    return dialect.local_day(sql, typ, tz)


def _date_column(spec: dict, col: Any) -> tuple[str, pa.DataType]:
    """The date field's SQL and type: a date, a time stamp, text, or, for yearly cells, a year
    (an integer, as a de-identification profile leaves a date), read as its first day."""
    sql, typ = col(spec["date_field"], "date_field")
    ages = any(isinstance(d, dict) and "age_band" in d for d in spec.get("group_by", []))
    if pa.types.is_integer(typ) and spec.get("grain") == "year" and not (spec.get("from") or spec.get("to") or ages):
        return sql, typ
    if not (_is_day(typ) or pa.types.is_string(typ)):
        whole = " (a year counts only in yearly cells, with no from, to or age band)" \
            if pa.types.is_integer(typ) else ""
        raise SpecError("date_field", f"column {spec['date_field']!r} is {typ}, not a date{whole}")
    return sql, typ


def period_query(spec: dict, schema: pa.Schema, relation: str, condition: str, *,
                 timezone: str = "UTC", dialect: Dialect = DUCKDB) -> Compiled:
    """Distinct periods of the rows of ``relation`` matching ``condition`` (incremental builds)."""
    params = _Params(dialect)

    def col(name: str, path: str) -> tuple[str, pa.DataType]:
        return dialect.quote(name), _column_type(schema, name, path)

    period = dialect.period(spec["grain"], day_expression(spec, col, timezone, params, dialect))
    sql = f"SELECT DISTINCT {period} AS p FROM {relation} WHERE {condition} AND {period} IS NOT NULL"
    return Compiled(sql, params.values)


def _age_band(age_sql: str, bands: list[int]) -> str:
    cases = []
    for lo, hi in pairwise(bands):
        cases.append(f"WHEN {age_sql} < {int(hi)} THEN '{int(lo)}-{int(hi) - 1}'")
    first = f"WHEN {age_sql} < {int(bands[0])} THEN 'under {int(bands[0])}' " if bands[0] > 0 else ""
    return (f"CASE WHEN {age_sql} IS NULL THEN NULL {first}{' '.join(cases)} "
            f"ELSE '{int(bands[-1])}+' END")
