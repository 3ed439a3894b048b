"""How the ViewDefinition compiler spells its SQL: DuckDB (JSON and lists) or Spark 4 (VARIANT and arrays).

Why a seam and not two compilers: the semantics (collections, singletons, forEach cross products)
are the hard part and must be the same on every engine, so the compiler decides *what* to compute
and asks the dialect only *how to write it*. Each method is one spelling; the DuckDB one is the text
the compiler always produced, so DuckDB output stays byte-identical.

Representation on Spark: a JSON item is a VARIANT (``parse_json`` of the resource text, then
``variant_get`` per path), a collection is ``ARRAY<VARIANT>``. VARIANT has no equality, so
`distinct` and `|` compare the items' JSON text.

Known difference: Spark's JSON readers (parse_json, get_json_object, from_json) keep a number's value
but not its written digits (1.0 is read as 1, 1.50 as 1.5), so lowBoundary()/highBoundary() of a
decimal written with trailing zeros see a coarser precision on Spark than on DuckDB.
"""

from __future__ import annotations

_JSON_CATEGORIES = {
    "number": "('BIGINT', 'UBIGINT', 'DOUBLE')",
    "integer": "('BIGINT', 'UBIGINT')",
    "boolean": "('BOOLEAN')",
    "string": "('VARCHAR')",
}


class DuckDBDialect:
    """DuckDB: JSON values, JSON[] lists, numbered parameters `$n`, lambdas `lambda x: ...`."""

    name = "duckdb"
    # Read all root paths with one multi-path json_extract per resource (see compile._Compiler.hoisted).
    hoist_root = True
    # Ask a path's JSON type on the root instead of reading the value first (cheap in DuckDB).
    path_shortcuts = True
    empty_list = "[]::JSON[]"
    null_json = "CAST(NULL AS JSON)"

    def ident(self, name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def string(self, text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    def type(self, sql_type: str) -> str:
        return sql_type

    def param(self, number: int, sql_type: str) -> str:
        return f"CAST(${number} AS {sql_type})"

    def params(self, values: list[object]) -> list[object] | dict[str, object]:
        return values

    def cast(self, sql: str, sql_type: str) -> str:
        return f"CAST({sql} AS {self.type(sql_type)})"

    def try_cast(self, sql: str, sql_type: str) -> str:
        return f"TRY_CAST({sql} AS {self.type(sql_type)})"

    # ------------------------------------------------------------------ JSON

    def get(self, base: str, path: str) -> str:
        return f"json_extract({base}, '{path}')"

    def get_string(self, base: str, path: str) -> str:
        return f"json_extract_string({base}, '{path}')"

    def text(self, item: str) -> str:
        """A JSON item as a string: strings unquoted, anything else as its JSON text."""
        return f"json_extract_string({item}, '$')"

    def raw_text(self, item: str) -> str:
        """The JSON text of an item as written (a decimal keeps its trailing zeros where the engine can)."""
        return f"CAST({item} AS VARCHAR)"

    def json_as(self, item: str, sql_type: str, strict: bool = False) -> str:
        """A JSON item converted to a SQL scalar; NULL when it does not convert, unless `strict`."""
        return f"{'CAST' if strict else 'TRY_CAST'}({item} AS {sql_type})"

    def to_json(self, scalar: str) -> str:
        return f"to_json({scalar})"

    def is_array(self, item: str, negate: bool = False) -> str:
        return f"json_type({item}) {'<>' if negate else '='} 'ARRAY'"

    def json_is(self, item: str, category: str) -> str:
        """True when the JSON item is of `category` (number, integer, boolean, string)."""
        if category in ("boolean", "string"):
            return f"json_type({item}) = '{'BOOLEAN' if category == 'boolean' else 'VARCHAR'}'"
        return f"json_type({item}) IN {_JSON_CATEGORIES[category]}"

    def json_in(self, item: str, category: str) -> str:
        """Like json_is, spelled as a set membership (as ofType() always wrote it)."""
        return f"json_type({item}) IN {_JSON_CATEGORIES[category]}"

    def array_length(self, item: str) -> str:
        return f"json_array_length({item})"

    def try_list(self, item: str) -> str:
        """The items of a JSON array, NULL when the item is not an array."""
        return f"TRY_CAST({item} AS JSON[])"

    # ----------------------------------------------------------------- lists

    def array(self, *items: str) -> str:
        return f"[{', '.join(items)}]"

    def size(self, lst: str) -> str:
        return f"len({lst})"

    def item(self, lst: str, n: int) -> str:
        """The n-th item (1 first, -1 last), NULL when absent; `lst` must already be bracketed if needed."""
        return f"{lst}[{n}]"

    def index(self, lst: str, zero_based: str) -> str:
        return f"{lst}[{zero_based} + 1]"

    def transform(self, lst: str, params: str, body: str) -> str:
        return f"list_transform({lst}, lambda {params}: {body})"

    def filter(self, lst: str, params: str, body: str) -> str:
        return f"list_filter({lst}, lambda {params}: {body})"

    def position(self, i: str) -> str:
        """The 0-based position of the item a two-parameter lambda is at."""
        return f"({i} - 1)"

    def row_position(self, i: str) -> str:
        return f"CAST({i} - 1 AS BIGINT)"

    def flatten(self, lists: str) -> str:
        return f"flatten({lists})"

    def concat(self, *lists: str) -> str:
        return f"list_concat({', '.join(lists)})"

    def prepend(self, item: str, lst: str) -> str:
        return f"list_prepend({item}, {lst})"

    def distinct(self, lst: str) -> str:
        return f"list_distinct({lst})"

    def contains(self, lst: str, value: str) -> str:
        return f"list_contains({lst}, {value})"

    def all_true(self, booleans: str) -> str:
        return f"list_bool_and({booleans}) IS NOT false"

    def join(self, strings: str, separator: str) -> str:
        return f"array_to_string({strings}, {separator})"

    def struct(self, fields: list[tuple[str, str]]) -> str:
        return f"struct_pack({', '.join(f'{self.ident(n)} := {v}' for n, v in fields)})"

    def field(self, struct: str, name: str) -> str:
        return f"{struct}.{self.ident(name)}"

    # --------------------------------------------------------------- scalars

    def error(self, message: str) -> str:
        return f"error({self.string(message)})"

    def function(self, name: str) -> str:
        """The engine's name of a string function known by its DuckDB name."""
        return name

    def find(self, haystack: str, needle: str) -> str:
        return f"strpos({haystack}, {needle})"

    def regex_test(self, text: str, pattern: str) -> str:
        return f"regexp_matches({text}, {pattern})"

    def trunc(self, number: str) -> str:
        return f"trunc({number})"

    def last_day(self, month: str) -> str:
        """'YYYY-MM' to the text of the month's last day."""
        return f"strftime(last_day(CAST({month} || '-01' AS DATE)), '%Y-%m-%d')"


class SparkDialect(DuckDBDialect):
    """Spark 4 SQL: VARIANT items, ARRAY<VARIANT> lists, named parameters `:pN`, lambdas `(x, i) -> ...`."""

    name = "spark"
    hoist_root = False
    path_shortcuts = False
    # Spark cannot write an empty ARRAY<VARIANT> literal; filtering a one-NULL array gives one.
    empty_list = "filter(array(CAST(NULL AS VARIANT)), __none -> false)"
    null_json = "CAST(NULL AS VARIANT)"
    _TYPES = {"VARCHAR": "STRING", "JSON": "VARIANT"}

    def __init__(self, param_prefix: str = "p") -> None:
        # Several compiled views can share one statement (and one round trip) when their parameter names differ.
        self.param_prefix = param_prefix

    def ident(self, name: str) -> str:
        return "`" + name.replace("`", "``") + "`"

    def string(self, text: str) -> str:
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

    def type(self, sql_type: str) -> str:
        if sql_type.endswith("[]"):
            return f"ARRAY<{self.type(sql_type[:-2])}>"
        return self._TYPES.get(sql_type, sql_type)

    def param(self, number: int, sql_type: str) -> str:
        return f"CAST(:{self.param_prefix}{number} AS {self.type(sql_type)})"

    def params(self, values: list[object]) -> list[object] | dict[str, object]:
        return {f"{self.param_prefix}{n}": v for n, v in enumerate(values, start=1)}

    def get(self, base: str, path: str) -> str:
        return f"variant_get({base}, '{path}')"

    def get_string(self, base: str, path: str) -> str:
        return f"try_variant_get({base}, '{path}', 'string')"

    def text(self, item: str) -> str:
        return f"try_variant_get({item}, '$', 'string')"

    def raw_text(self, item: str) -> str:
        return f"to_json({item})"

    def json_as(self, item: str, sql_type: str, strict: bool = False) -> str:
        function = "variant_get" if strict else "try_variant_get"
        return f"{function}({item}, '$', '{self.type(sql_type).lower()}')"

    def to_json(self, scalar: str) -> str:
        return f"CAST({scalar} AS VARIANT)"

    def is_array(self, item: str, negate: bool = False) -> str:
        return f"(try_variant_get({item}, '$', 'array<variant>') IS {'' if negate else 'NOT '}NULL)"

    def json_is(self, item: str, category: str) -> str:
        pattern = {"number": "^(BIGINT|DOUBLE|DECIMAL)", "integer": "^BIGINT$", "boolean": "^BOOLEAN$",
                   "string": "^STRING$"}[category]
        return f"(schema_of_variant({item}) RLIKE '{pattern}')"

    json_in = json_is

    def array_length(self, item: str) -> str:
        return f"size(try_variant_get({item}, '$', 'array<variant>'))"

    def try_list(self, item: str) -> str:
        return f"try_variant_get({item}, '$', 'array<variant>')"

    def array(self, *items: str) -> str:
        return f"array({', '.join(items)})"

    def size(self, lst: str) -> str:
        return f"size({lst})"

    def item(self, lst: str, n: int) -> str:
        return f"try_element_at({lst}, {n})"

    def index(self, lst: str, zero_based: str) -> str:
        return f"get({lst}, CAST({zero_based} AS INT))"

    @staticmethod
    def _lambda(params: str, body: str) -> str:
        # Spark takes `x -> ...` or `(x, i) -> ...`, but not `(x) -> ...`.
        return f"({params}) -> {body}" if "," in params else f"{params} -> {body}"

    def transform(self, lst: str, params: str, body: str) -> str:
        return f"transform({lst}, {self._lambda(params, body)})"

    def filter(self, lst: str, params: str, body: str) -> str:
        return f"filter({lst}, {self._lambda(params, body)})"

    def position(self, i: str) -> str:
        return f"CAST({i} AS BIGINT)"

    def row_position(self, i: str) -> str:
        return f"CAST({i} AS BIGINT)"

    def concat(self, *lists: str) -> str:
        return f"concat({', '.join(lists)})"

    def prepend(self, item: str, lst: str) -> str:
        return f"concat(array({item}), {lst})"

    def distinct(self, lst: str) -> str:
        as_text = f"transform({lst}, __v -> to_json(__v))"
        return f"transform(array_distinct({as_text}), __s -> parse_json(__s))"

    def contains(self, lst: str, value: str) -> str:
        return f"array_contains({lst}, {value})"

    def all_true(self, booleans: str) -> str:
        return f"NOT array_contains({booleans}, false)"

    def join(self, strings: str, separator: str) -> str:
        return f"array_join({strings}, {separator})"

    def struct(self, fields: list[tuple[str, str]]) -> str:
        return f"named_struct({', '.join(f'{self.string(n)}, {v}' for n, v in fields)})"

    def error(self, message: str) -> str:
        return f"raise_error({self.string(message)})"

    _FUNCTIONS = {"starts_with": "startswith", "suffix": "endswith", "regexp_matches": "regexp_like"}

    def function(self, name: str) -> str:
        return self._FUNCTIONS.get(name, name)

    def find(self, haystack: str, needle: str) -> str:
        return f"instr({haystack}, {needle})"

    def regex_test(self, text: str, pattern: str) -> str:
        return f"regexp_like({text}, {pattern})"

    def trunc(self, number: str) -> str:
        return number

    def last_day(self, month: str) -> str:
        return f"CAST(last_day(CAST({month} || '-01' AS DATE)) AS STRING)"


DIALECTS = {"duckdb": DuckDBDialect(), "spark": SparkDialect()}


def dialect_named(name: str, param_prefix: str = "p") -> DuckDBDialect:
    if name == "spark" and param_prefix != "p":
        return SparkDialect(param_prefix)
    try:
        return DIALECTS[name]
    except KeyError:
        raise ValueError(f"unknown SQL dialect {name!r} (known: {', '.join(sorted(DIALECTS))})") from None
