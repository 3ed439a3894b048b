"""The FHIRPath functions a ViewDefinition may call, as a table: name -> how it compiles to SQL.

Each entry says how many arguments the function takes and what it receives. Most functions get
their receiver already compiled (a `V`) and their arguments as parse trees, so they decide how
and in which context (`$this`, `$index`) each argument is evaluated. `ofType(T)` is the one
exception: its argument is a type name, not a value, and on a choice element it selects the
JSON property (`value.ofType(Quantity)` is `valueQuantity`), so it gets the receiver's tree.

Adding a function is adding one entry; the compiler (`compile._Compiler.call`) checks the
argument count before calling it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import ViewError
from .values import RESOURCE, Env, V

if TYPE_CHECKING:
    from .compile import _Compiler


@dataclass(frozen=True)
class Function:
    """How one function compiles: `low`..`high` arguments; `type_argument` for ofType's rules."""

    compile: Callable[..., V]
    low: int = 0
    high: int = 0
    type_argument: bool = False

    def check_arguments(self, name: str, args: list) -> None:
        if self.type_argument:
            if len(args) != 1 or args[0][0] != "member" or args[0][1] is not None:
                raise ViewError(f"{name}() takes one type name")
        elif not self.low <= len(args) <= self.high:
            raise ViewError(f"{name}() takes {self.low}..{self.high} arguments, got {len(args)}")


def _lambda_env(c: _Compiler, env: Env, e: str, i: str | None, fhir: str | None = None) -> Env:
    """The context of an argument evaluated once per item: the item is $this, its position $index."""
    return Env(V(e, "json", fhir=fhir), env.root, env.row_index, c.d.position(i) if i else None)


# ------------------------------------------------------------------- collections

def _of_type(c: _Compiler, base_node: tuple | None, args: list, env: Env) -> V:
    return c.of_type(("this",) if base_node is None else base_node, args[0][2], env)


def _where(c: _Compiler, base: V, args: list, env: Env) -> V:
    e, i = c.var(), c.var("i")
    crit = c.truth(c.expr(args[0], _lambda_env(c, env, e, i, base.fhir)), "where()")
    return V(c.d.filter(c.to_list(base), f"{e}, {i}", f"COALESCE({crit}, false)"), "list",
             base.ftype, fhir=base.fhir)


def _select(c: _Compiler, base: V, args: list, env: Env) -> V:
    e, i = c.var(), c.var("i")
    inner_v = c.expr(args[0], _lambda_env(c, env, e, i, base.fhir))
    inner = c.to_list(inner_v)
    return V(c.d.flatten(c.d.transform(c.to_list(base), f"{e}, {i}", inner)), "list", fhir=inner_v.fhir)


def _exists(c: _Compiler, base: V, args: list, env: Env) -> V:
    if args:
        base = _where(c, base, args, env)
    return V(c.exists(base), "prim", "boolean")


def _empty(c: _Compiler, base: V, args: list, env: Env) -> V:
    return V(f"(NOT {c.exists(base)})", "prim", "boolean")


def _all(c: _Compiler, base: V, args: list, env: Env) -> V:
    e, i = c.var(), c.var("i")
    crit = c.truth(c.expr(args[0], _lambda_env(c, env, e, i)), "all()")
    checks = c.d.transform(c.to_list(base), f"{e}, {i}", f"COALESCE({crit}, false)")
    return V(c.d.all_true(checks), "prim", "boolean")


def _first(c: _Compiler, base: V, args: list, env: Env) -> V:
    if base.kind in ("json", "prim"):
        return base
    if base.kind == "plist":
        return V(c.d.item(f"({base.sql})", 1), "prim", base.ftype)
    if base.kind == "multi":
        sql = c.let(base.sql, lambda t: f"CASE WHEN {c.d.is_array(t)} THEN {c.d.get(t, '$[0]')} "
                                        f"ELSE {t} END")
        return V(sql, "json", base.ftype)
    return V(c.d.item(f"({base.sql})", 1), "json", base.ftype)


def _last(c: _Compiler, base: V, args: list, env: Env) -> V:
    if base.kind in ("json", "prim"):
        return base
    if base.kind == "plist":
        return V(c.d.item(f"({base.sql})", -1), "prim", base.ftype)
    return V(c.d.item(f"({c.to_list(base)})", -1), "json", base.ftype)


def _single(c: _Compiler, base: V, args: list, env: Env) -> V:
    return c.single(base, "single()")


def _count(c: _Compiler, base: V, args: list, env: Env) -> V:
    sql = base.sql if base.kind == "plist" else c.to_list(base)
    return V(f"CAST({c.d.size(sql)} AS BIGINT)", "prim", "integer")


def _distinct(c: _Compiler, base: V, args: list, env: Env) -> V:
    return V(c.d.distinct(c.to_list(base)), "list", base.ftype)


def _not(c: _Compiler, base: V, args: list, env: Env) -> V:
    return V(f"(NOT {c.truth(base, 'not()')})", "prim", "boolean")


def _iif(c: _Compiler, base: V, args: list, env: Env) -> V:
    cond = c.truth(c.expr(args[0], env), "iif()")
    then = c.to_list(c.expr(args[1], env))
    other = c.to_list(c.expr(args[2], env)) if len(args) == 3 else c.d.empty_list
    return V(f"CASE WHEN {cond} THEN {then} ELSE {other} END", "list")


def _join(c: _Compiler, base: V, args: list, env: Env) -> V:
    sep = c.typed(c.expr(args[0], env), "VARCHAR", "join()") if args else "''"
    e = c.var()
    if base.kind == "plist":
        items = c.d.transform(base.sql, e, c.d.cast(e, "VARCHAR"))
    else:
        items = c.d.transform(c.to_list(base), e, c.d.text(e))
    return V(c.d.join(items, f"COALESCE({sep}, '')"), "prim", "string")


# ---------------------------------------------------------- SQL-on-FHIR and FHIR

def _get_resource_key(c: _Compiler, base: V, args: list, env: Env) -> V:
    return c.map_items(base, lambda x: c.extract_string(x, "$.id"), "string")


def _get_reference_key(c: _Compiler, base: V, args: list, env: Env) -> V:
    want = None
    if args:
        if args[0][0] != "member" or args[0][1] is not None or not RESOURCE.match(args[0][2]):
            raise ViewError("getReferenceKey() takes a resource type name")
        want = args[0][2]
    # Relative or absolute literal references ([base/]Type/id[/_history/v]); the key is the id.
    pattern = c.d.string(f"(?:^|/){want or '[A-Za-z]+'}/([A-Za-z0-9.\\-]{{1,64}})(?:/_history/[^/]+)?$")
    if base.kind == "json" and base.fhir == "Reference":
        reference = c.typed(c.member(base, "reference"), "VARCHAR", "getReferenceKey()")
        return V(f"NULLIF(regexp_extract({reference}, {pattern}, 1), '')", "prim", "string")

    def key(x: str) -> str:
        return f"NULLIF(regexp_extract({c.d.get_string(x, '$.reference')}, {pattern}, 1), '')"

    return c.map_items(base, key, "string")


def _extension(c: _Compiler, base: V, args: list, env: Env) -> V:
    url = c.typed(c.expr(args[0], env), "VARCHAR", "extension()")
    e = c.var()
    exts = c.to_list(c.member(base, "extension"))
    return V(c.d.filter(exts, e, f"{c.d.get_string(e, '$.url')} = {url}"), "list")


# ----------------------------------------------------------------------- strings

def _on_string(c: _Compiler, base: V, sql: Callable[[str], str], ftype: str) -> V:
    """A function of the receiver read as one string (an error if it holds several items)."""
    s = c.typed(base, "VARCHAR", "string function")
    return V(c.let(s, sql), "prim", ftype)


def _string_arg(c: _Compiler, args: list, env: Env, n: int) -> str:
    return c.typed(c.expr(args[n], env), "VARCHAR", "string function argument")


def _string_test(sql_function: str) -> Callable[..., V]:
    """startsWith, endsWith, contains, matches: a boolean SQL function of the string and one argument."""

    def compile_test(c: _Compiler, base: V, args: list, env: Env) -> V:
        arg = _string_arg(c, args, env, 0)
        return _on_string(c, base, lambda s: f"{c.d.function(sql_function)}({s}, {arg})", "boolean")

    return compile_test


def _string_map(sql: Callable[[str], str], ftype: str = "string") -> Callable[..., V]:
    """upper, lower, trim, length: a SQL expression of the string alone."""

    def compile_map(c: _Compiler, base: V, args: list, env: Env) -> V:
        return _on_string(c, base, sql, ftype)

    return compile_map


def _replace(c: _Compiler, base: V, args: list, env: Env) -> V:
    a, b = _string_arg(c, args, env, 0), _string_arg(c, args, env, 1)
    return _on_string(c, base, lambda s: f"replace({s}, {a}, {b})", "string")


def _substring(c: _Compiler, base: V, args: list, env: Env) -> V:
    start = c.typed(c.expr(args[0], env), "BIGINT", "substring()")
    if len(args) == 2:
        length = c.typed(c.expr(args[1], env), "BIGINT", "substring()")
        return _on_string(c, base, lambda s: f"CASE WHEN {start} < length({s}) THEN "
                                             f"substring({s}, {start} + 1, {length}) END", "string")
    return _on_string(c, base, lambda s: f"CASE WHEN {start} < length({s}) THEN "
                                         f"substring({s}, {start} + 1) END", "string")


# ------------------------------------------------------------------- conversions

def _convert(sql_type: str, ftype: str, what: str) -> Callable[..., V]:
    """toString, toInteger, toDecimal: the receiver as one scalar of `sql_type`."""

    def compile_conversion(c: _Compiler, base: V, args: list, env: Env) -> V:
        return V(c.typed(base, sql_type, what), "prim", ftype)

    return compile_conversion


_CLOCK_PATTERN = r"^\d\d:\d\d"


def _boundary(low: bool) -> Callable[..., V]:
    """lowBoundary()/highBoundary() of decimals, dates, dateTimes and times, by their written precision."""

    def compile_boundary(c: _Compiler, base: V, args: list, env: Env) -> V:
        d = c.d
        hh_mm = d.string(_CLOCK_PATTERN)
        s = c.single(base, "boundary")
        item = s.sql if s.kind == "json" else d.to_json(s.sql)
        sign = "-" if low else "+"
        hint = base.ftype

        def decimal(t: str) -> str:
            txt = d.raw_text(t)
            dot = d.find(txt, "'.'")
            places = f"CASE WHEN {dot} > 0 THEN length({txt}) - {dot} ELSE 0 END"
            return d.to_json(f"{d.json_as(t, 'DOUBLE', strict=True)} {sign} 0.5 * pow(10, -({places}))")

        def date_part(x: str) -> str:
            if low:
                return f"CASE length({x}) WHEN 4 THEN {x} || '-01-01' WHEN 7 THEN {x} || '-01' ELSE {x} END"
            return f"CASE length({x}) WHEN 4 THEN {x} || '-12-31' WHEN 7 THEN {d.last_day(x)} ELSE {x} END"

        def text(v: str) -> str:
            time_sfx = ("'.000'", "':00.000'") if low else ("'.999'", "':59.999'")
            time = f"CASE length({v}) WHEN 8 THEN {v} || {time_sfx[0]} WHEN 5 THEN {v} || {time_sfx[1]} ELSE {v} END"
            tz = "'+14:00'" if low else "'-12:00'"
            clock = "'T00:00:00.000'" if low else "'T23:59:59.999'"
            as_datetime = (f"CASE WHEN contains({v}, 'T') THEN CASE length({v}) WHEN 19 THEN {v} || "
                           f"{time_sfx[0]} || {tz} ELSE {v} END ELSE {date_part(v)} || {clock} || {tz} END")
            if hint == "time":
                return time
            if hint in ("dateTime", "instant"):
                return as_datetime
            if hint == "date":
                return date_part(v)
            return (f"CASE WHEN {d.regex_test(v, hh_mm)} THEN {time} "
                    f"WHEN contains({v}, 'T') THEN {as_datetime} ELSE {date_part(v)} END")

        def body(t: str) -> str:
            as_text = c.let(d.text(t), text)
            return (f"CASE WHEN {d.json_is(t, 'number')} THEN {decimal(t)} "
                    f"WHEN {d.json_is(t, 'string')} THEN {d.to_json(as_text)} END")

        return V(c.let(item, body), "json", hint)

    return compile_boundary


FUNCTIONS: dict[str, Function] = {
    "ofType": Function(_of_type, 1, 1, type_argument=True),
    "where": Function(_where, 1, 1),
    "select": Function(_select, 1, 1),
    "exists": Function(_exists, 0, 1),
    "empty": Function(_empty),
    "all": Function(_all, 1, 1),
    "first": Function(_first),
    "last": Function(_last),
    "single": Function(_single),
    "count": Function(_count),
    "distinct": Function(_distinct),
    "not": Function(_not),
    "iif": Function(_iif, 2, 3),
    "join": Function(_join, 0, 1),
    "getResourceKey": Function(_get_resource_key),
    "getReferenceKey": Function(_get_reference_key, 0, 1),
    "extension": Function(_extension, 1, 1),
    "startsWith": Function(_string_test("starts_with"), 1, 1),
    "endsWith": Function(_string_test("suffix"), 1, 1),
    "contains": Function(_string_test("contains"), 1, 1),
    "matches": Function(_string_test("regexp_matches"), 1, 1),
    "replace": Function(_replace, 2, 2),
    "upper": Function(_string_map(lambda s: f"upper({s})")),
    "lower": Function(_string_map(lambda s: f"lower({s})")),
    "trim": Function(_string_map(lambda s: f"trim({s})")),
    "length": Function(_string_map(lambda s: f"CAST(length({s}) AS BIGINT)", "integer")),
    "substring": Function(_substring, 1, 2),
    "toString": Function(_convert("VARCHAR", "string", "toString()")),
    "toInteger": Function(_convert("BIGINT", "integer", "toInteger()")),
    "toDecimal": Function(_convert("DOUBLE", "decimal", "toDecimal()")),
    "lowBoundary": Function(_boundary(low=True)),
    "highBoundary": Function(_boundary(low=False)),
}
