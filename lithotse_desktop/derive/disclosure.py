"""What a derivative may disclose: aggregate cells, restricted row-level data, or de-identified rows.

Every derivative is classified from its spec when it is added and built:

* ``aggregate``: every output row is a cell (an aggregate, whose small cells are suppressed; a
  ``sql`` derivative that declares its ``count_column``, suppressed the same way; or a ``sql``
  derivative that reads published derivatives only, so it can show nothing they do not);
* ``row-level``: views (one row per resource) and ``sql`` results without a declared
  ``count_column``. Their versions are written to the restricted store (``[tiers] restricted``,
  by default the raw tier's store) and never reach the L3 cache, the local API, workbook
  bindings, exports or a store managers read; they stay usable as inputs to aggregates;
* ``deidentified``: a row-level derivative with a de-identification profile (``"deidentify":
  "safe-harbor"`` or ``"limited"``, see :mod:`.deidentify`), published like an aggregate.

Cells never carry identifiers: an aggregate may not be split by, or take the minimum of, a
column whose role (:mod:`.identifiers`) is a direct identifier, and a ``sql`` cells query reads
its inputs with those columns replaced by tokens it cannot publish (an output column holding a
token is refused, naming the input column), birth dates cut to their year and whole FHIR
resources left out. Every refusal names the rule it applies.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from ..deferred import pyarrow_compute as pc
from ..errors import LithotseError
from .compile import DUCKDB, PERIOD, Dialect
from .complementary import DEFAULT_ZERO_RULE, Cells, Group, anchors_table, carried_states, decide
from .deidentify import PROFILES
from .identifiers import (
    ROLES,
    ViewPicks,
    check_columns_map,
    identifying,
    role_by_name,
    type_role,
    view_column_roles,
    view_computed_columns,
    view_picks,
)
from .kinds.sql import JOIN_RULE, ONE_CELL_RULE, people_apart
from .lineage import Picks, Unparsable, sql_column_roles, sql_picks
from .revisions import counts_of
from .spec import SpecError, dimension_alias
from .suppress import FLAG, publish_cells

PUBLISHED = ("aggregate", "deidentified")
ROW_LEVEL_RULE = "row-level data stays restricted"
TOKEN_OPEN, TOKEN_CLOSE = "\u27e6", "\u27e7"
PRESENCE_OPS = ("is null", "is not null")
"""Filter operators that test whether a value is there, not what it is: they single out no one."""
FILTER_RULE = "a filter may not single out people by an identifier"


class Restricted(LithotseError):
    """A row-level derivative asked for through a door that publishes (cache, API, workbook,
    export, a store managers read), or read with credentials that may not read the restricted store."""

    def __init__(self, message: str, rule: str = ROW_LEVEL_RULE) -> None:
        self.rule = rule
        super().__init__(message)


class IdentifierRefused(Restricted):
    """A published cell would carry an identifier."""


@dataclass(frozen=True)
class Disclosure:
    kind: str
    """``aggregate``, ``row-level`` or ``deidentified``."""
    reason: str

    @property
    def published(self) -> bool:
        return self.kind in PUBLISHED

    @property
    def area(self) -> str:
        """The top-level folder (and tier) its versions are written to."""
        return "restricted" if self.kind == "row-level" else "derived"


def classify(spec: dict, spec_of: Callable[[str], dict | None], _seen: frozenset[str] = frozenset()) -> Disclosure:
    """The class of a (validated) spec; ``spec_of`` finds the specs of input derivatives."""
    profile = spec.get("deidentify")
    if profile:
        return Disclosure("deidentified", f"de-identified with the {profile} profile")
    kind = spec.get("kind")
    if kind == "aggregate":
        return Disclosure("aggregate", "an aggregate: cells, small ones suppressed")
    if kind == "sql":
        if spec.get("count_column"):
            return Disclosure("aggregate", f"sql cells, each counting {spec['count_column']!r}, small ones "
                                           "suppressed")
        inputs = list((spec.get("inputs") or {}).values())
        if inputs and all(isinstance(i, dict) and "derivative" in i for i in inputs):
            classes = []
            for item in inputs:
                name = item["derivative"]
                found = spec_of(name) if name not in _seen else None
                classes.append(classify(found, spec_of, _seen | {spec.get("name", "")}).kind
                               if found else "row-level")
            if all(c in PUBLISHED for c in classes):
                kind_of = "deidentified" if "deidentified" in classes else "aggregate"
                return Disclosure(kind_of, "sql over published derivatives only")
        return Disclosure("row-level", "an sql result without a declared count_column")
    return Disclosure("row-level", "a view: one row per resource")


def refusal(name: str, disclosure: Disclosure, door: str) -> Restricted:
    return Restricted(f"derivative {name!r} is row-level ({disclosure.reason}), so it never reaches {door}; "
                      f"rule: {ROW_LEVEL_RULE} — aggregate it, or publish it through a de-identification "
                      f"profile (\"deidentify\": \"safe-harbor\")")


def unreadable(name: str, disclosure: Disclosure, where: str) -> Restricted:
    return Restricted(f"derivative {name!r} is row-level ({disclosure.reason}): its rows are kept in the "
                      f"restricted store ({where}), which these credentials may not read; rule: "
                      f"{ROW_LEVEL_RULE} — only analysts read it")


def validate_privacy_keys(spec: dict) -> None:
    """Structural checks of ``deidentify``, ``columns``, ``count_column`` and ``people_column``."""
    kind = spec.get("kind")
    if "columns" in spec:
        try:
            check_columns_map(spec["columns"])
        except ValueError as exc:
            raise SpecError("columns", str(exc)) from None
    if spec.get("deidentify") is not None:
        if spec["deidentify"] not in PROFILES:
            raise SpecError("deidentify", f"{spec['deidentify']!r} is not one of {', '.join(PROFILES)}")
        if kind == "aggregate":
            raise SpecError("deidentify", "an aggregate publishes cells already; profiles are for views and sql")
        if spec.get("count_column"):
            raise SpecError("deidentify", "sql cells (count_column) are published as aggregates; drop one of the two")
    for key in ("count_column", "people_column"):
        if key in spec:
            if kind != "sql":
                raise SpecError(key, "only a sql derivative declares its count columns")
            if not isinstance(spec[key], str) or not spec[key]:
                raise SpecError(key, "must name an output column")
    if "people_column" in spec and "count_column" not in spec:
        raise SpecError("people_column", "needs count_column too (the rows are cells only then)")


# --- roles of inputs and outputs -----------------------------------------------------------------------
def declared(spec: dict) -> dict[str, str]:
    return dict(spec.get("columns") or {})


ROLES_VERSION = 5
"""How a version's column roles were found (its ``privacy.roles``): 2 since a sql column takes the
roles of the input columns it reads (:mod:`.lineage`); before, only an input column's of the
same name, so ``patient_id AS pt`` was recorded with no role. 3 since sql and view versions record
the conditions by which they pick people out by an identifier (``privacy.picks``, see :func:`picks`).
4 since they record why their rows may be several for one record (``privacy.several``). 5 since
references that may name a Patient are keys, ``Age`` an age, URLs URLs, and a criterion testing
an identifier gives its role (a de-identified version built before may hold what these hide)."""
FOLLOWED = ("sql", "view")
"""The kinds whose versions record how their roles and picks were found (``privacy.roles``)."""


def derivative_roles(version_privacy: dict | None, spec: dict | None, schema: pa.Schema) -> dict[str, str | None]:
    """An input derivative's column roles: as its version recorded them, else from its spec. A
    sql or view version whose roles or picks were found the older way is not trusted: it is to be rebuilt."""
    recorded = (version_privacy or {}).get("columns")
    if (isinstance(recorded, dict) and spec is not None and spec.get("kind") in FOLLOWED
            and (version_privacy or {}).get("roles", 1) < ROLES_VERSION):
        name = spec.get("name")
        raise Restricted(f"derivative {name!r} was published before its columns' roles followed its "
                         f"{'SQL' if spec.get('kind') == 'sql' else 'paths'} and its conditions were read for "
                         f"identifiers; run: lithotse derive build {name}",
                         rule="an input's identifiers are known before anything is built over it")
    if isinstance(recorded, dict):
        return {name: recorded.get(name) for name in schema.names}
    roles = view_column_roles(spec.get("view", {})) if spec and spec.get("kind") == "view" else {}
    return {name: roles.get(name, role_by_name(name)) for name in schema.names}


def with_declared(spec: dict, roles: dict[str, str | None]) -> dict[str, str | None]:
    named = declared(spec)
    return {column: named.get(column, found) for column, found in roles.items()}


def _label(column: str, role_name: str, where: str) -> str:
    return f"column {column!r}{where} is {ROLES[role_name].rule()}"


COUNT_KEY_RULE = ("a cell's keys, filters and measures read its rows' values, not counts of groups of rows made "
                  "before it (count per person, or count the rows in the cell itself)")


def _count_uses(spec: dict) -> list[tuple[str, str, str]]:
    """Where an aggregate reads a column other than by counting its rows: (field, column, how)."""
    uses = [(f"filters[{i}]", f["column"], "a filter on it keeps groups of a chosen size, and its cells list them")
            for i, f in enumerate(spec.get("filters", []))]
    for i, d in enumerate(spec.get("group_by", [])):
        column = d if isinstance(d, str) else d.get("column")
        if column is not None:
            uses.append((f"group_by[{i}]", column, "a key carries that count, suppressed cells too"))
    uses += [(f"measures[{i}]", m["column"], f"its {m['fn']} publishes what those counts add up to")
             for i, m in enumerate(spec.get("measures", [])) if "column" in m and m["fn"] != "count"]
    return uses


def check_aggregate(spec: dict, roles: dict[str, dict[str, str | None]],
                    computed: dict[str, list[str]] | None = None) -> dict[str, str | None]:
    """Refuse group-bys and measures that would publish identifiers, and filters that would pick
    people out by one; the output columns' roles.

    ``roles`` holds the roles of each input's columns by alias (``input``, ``joined``); ``computed``
    the identifier columns each input derivative computed (its ``privacy.computed``): a presence
    test of one of those may be a comparison in disguise.
    """
    seen: dict[str, str | None] = dict(roles.get("input", {}))
    for column in (spec.get("join") or {}).get("columns", []):
        seen[column] = roles.get("joined", {}).get(column)
    changed = {column: alias for alias in ("input", "joined") for column in (computed or {}).get(alias, ())}
    for field_path, column, use in _count_uses(spec):
        if seen.get(column) == "count":
            raise IdentifierRefused(
                f"{field_path}: column {column!r} is {ROLES['count'].label}: {use}; rule: {COUNT_KEY_RULE}",
                rule=COUNT_KEY_RULE)
    for i, f in enumerate(spec.get("filters", [])):
        found = seen.get(f["column"])
        if found is not None and not ROLES[found].cell_dimension and f["op"] not in PRESENCE_OPS:
            raise IdentifierRefused(
                f"filters[{i}]: {_label(f['column'], found, '')}; rule: {FILTER_RULE} — its cells would be those "
                "people's (filter on a code or a date range, or only test it for presence with 'is null' / "
                "'is not null')", rule="filters single out no one")
        if found is not None and not ROLES[found].cell_dimension and f["column"] in changed:
            raise IdentifierRefused(
                f"filters[{i}]: {_label(f['column'], found, '')}, computed by the {changed[f['column']]} "
                f"derivative rather than passed on unchanged, so '{f['op']}' may test what it was computed "
                f"from (nullif(patient_id, 'P1') is null for one person only); rule: {FILTER_RULE} — test "
                "presence only of an identifier column as its input holds it", rule="filters single out no one")
    out: dict[str, str | None] = {}
    if spec.get("grain", "none") != "none":
        out[PERIOD] = "code"
    for i, d in enumerate(spec.get("group_by", [])):
        alias = dimension_alias(d)
        if isinstance(d, str) or "column" in d:
            column = d if isinstance(d, str) else d["column"]
            found = seen.get(column)
            if found is not None and not ROLES[found].cell_dimension:
                raise IdentifierRefused(
                    f"group_by[{i}]: {_label(column, found, '')}; rule: a published cell never carries an "
                    "identifier — count it (count_distinct) or group by something coarser (an age band, a "
                    "code)", rule="cells carry no identifiers")
            out[alias] = found
        else:
            out[alias] = "code"
    for i, m in enumerate(spec.get("measures", [])):
        found = seen.get(m.get("column", ""))
        if found is not None and not ROLES[found].cell_dimension and m["fn"] not in ("count", "count_distinct"):
            raise IdentifierRefused(
                f"measures[{i}]: {m['fn']} of {_label(m['column'], found, '')}, which would publish one "
                "person's value; rule: a published cell never carries an identifier — only count and "
                "count_distinct may read it", rule="cells carry no identifiers")
        out[m["as"]] = "value"
    out[FLAG] = "value"
    return out


def output_roles(spec: dict, schema: pa.Schema, inputs: dict[str, dict[str, str | None]],
                 computed: dict[str, frozenset[str]] | None = None) -> dict[str, str | None]:
    """Roles of a view's or sql's output columns: the spec's ``columns`` first, then (views) the
    FHIR types of the paths or (sql) the strongest role of the input columns each reads
    (:mod:`.lineage`), then numbers and dates by type, except under a de-identification profile,
    where an input column of numbers nothing classifies stays unclassified (an SSN or a phone
    number held as a number was published as a value). Spark SQL that DuckDB's parser
    refuses keeps the older rule: an input column of the same name.

    ``computed`` (when given) gets the columns whose values are computed, not an input column's or
    a resource element's own, each with the roles it is computed from (see
    :func:`.deidentify.actions`)."""
    named = declared(spec)
    by_type = not spec.get("deidentify")
    found_computed: dict[str, frozenset[str]] = {}
    if spec.get("kind") == "view":
        found, found_computed = view_roles(spec)
    elif spec.get("kind") == "sql":
        unfollowed: list[str] = []
        try:
            found = sql_column_roles(str(spec.get("sql", "")), schema, inputs, by_type=by_type,
                                     computed=found_computed, unfollowed=unfollowed)
            if unfollowed and spec.get("deidentify"):
                raise SpecError("sql", f"the {spec['deidentify']} profile judges each column by the input columns it "
                                       f"is computed from, and this query's {unfollowed[0]} cannot be followed to "
                                       "them; name the columns instead")
        except Unparsable:
            found = _by_input_name(schema, inputs, by_type)
            everything = frozenset(r for roles in inputs.values() for r in roles.values() if r)
            found_computed = {f.name: everything for f in schema
                              if not any(f.name in roles for roles in inputs.values())}
    else:
        found = _by_input_name(schema, inputs, by_type)
    if computed is not None:
        computed.update(found_computed)
    return {field.name: named[field.name] if field.name in named else found.get(field.name) for field in schema}


def view_roles(spec: dict) -> tuple[dict[str, str | None], dict[str, frozenset[str]]]:
    """A view's column roles from its paths (a declared ``type`` classifies nothing under a
    profile), and its computed columns with the role each is computed from."""
    found = view_column_roles(spec.get("view", {}), hints=not spec.get("deidentify"))
    return found, {c: frozenset({r} if (r := found.get(c)) else ())
                   for c in view_computed_columns(spec.get("view", {}))}


def _by_input_name(schema: pa.Schema, inputs: dict[str, dict[str, str | None]],
                   by_type: bool = True) -> dict[str, str | None]:
    by_name: dict[str, str | None] = {}
    for roles in inputs.values():
        for column, found in roles.items():
            if found is not None and column not in by_name:
                by_name[column] = found
    return {field.name: by_name.get(field.name) or type_role(field, numbers=by_type or not any(
        field.name in roles for roles in inputs.values())) for field in schema}


# --- rows picked by an identifier ----------------------------------------------------------------------
def picks(spec: dict, schema: pa.Schema, inputs: dict[str, dict[str, str | None]],
          upstream: dict[str, dict], several_found: list[str] | None = None) -> dict[str, list]:
    """What a sql or view version records of how its rows were chosen: ``picks``, every condition
    that picks people out by an identifier, its own (:func:`.lineage.sql_picks`,
    :func:`.identifiers.view_picks`) and its input derivatives' (``upstream``: their recorded
    privacy, by alias), each naming the derivative it is written in; and ``computed``, its
    identifier columns not passed on unchanged; ``apart``, its joins of people not on their person
    keys; and ``several``, why its rows may be several for one record (a sql's from its shape and
    ``several_found``, what its build found on the data; a view's from its ViewDefinition), its
    own and its inputs'."""
    name = str(spec.get("name"))
    if spec.get("kind") == "view":
        found: Picks | ViewPicks = view_picks(spec.get("view", {}))
    else:
        changed = {alias: frozenset(privacy.get("computed", [])) for alias, privacy in upstream.items()}
        try:
            found = sql_picks(str(spec.get("sql", "")), schema, inputs, changed)
        except Unparsable:
            found = _unparsed_picks(str(spec.get("sql", "")), schema, inputs)
    inherited = [entry for privacy in upstream.values() for entry in privacy.get("picks", [])]
    own = [{"derivative": name, "condition": condition} for condition in found.conditions]
    apart = [{"derivative": name, "join": join} for join in
             (people_apart(str(spec.get("sql", "")), inputs) if spec.get("kind") == "sql" else [])]
    apart += [entry for privacy in upstream.values() for entry in privacy.get("apart", [])]
    return {"picks": [*own, *inherited], "computed": sorted(found.computed), "apart": apart,
            "several": several_entries(spec, upstream, several_found)}


DEIDENTIFIED_PICK_RULE = ("a de-identified derivative does not choose its rows or values by an identifier "
                          "(which rows or values are there would tell it)")


def check_deidentified_picks(spec: dict, found: dict[str, list]) -> None:
    """Refuses a de-identification profile over rows or values chosen by comparing an identifier
    (``WHERE month(dob) = 9``, ``birthDate.where(…= '09')``, a ``forEach`` testing a ZIP code's
    digits), its own or its inputs': the profile cuts each value it publishes, but which rows and
    values are there is the comparison's answer (pass 36: month, day and ZIP of every patient
    back from which of 43 columns were filled)."""
    if not spec.get("deidentify") or not found.get("picks"):
        return
    entry = found["picks"][0]
    where = "" if entry.get("derivative") == spec.get("name") else f" (in derivative {entry.get('derivative')!r})"
    raise SpecError("deidentify", f"{entry.get('condition')!r}{where} compares an identifier; "
                                  f"rule: {DEIDENTIFIED_PICK_RULE}")


def several_entries(spec: dict, upstream: dict[str, dict], several_found: list[str] | None = None) -> list[dict]:
    """A version's ``privacy.several`` (see :func:`picks`): its own reasons, then its inputs'."""
    name = str(spec.get("name"))
    several = [{"derivative": name, "why": why} for why in
               (view_several(spec.get("view", {})) if spec.get("kind") == "view" else list(several_found or []))]
    return several + [entry for privacy in upstream.values() for entry in privacy.get("several", [])]


def view_several(view: dict) -> list[str]:
    """Why a ViewDefinition may make several rows of one resource: a ``forEach``,
    ``forEachOrNull``, ``repeat`` (a row per element) or ``unionAll`` (a row per branch)."""
    found: list[str] = []

    def walk(select: dict) -> None:
        for key in ("forEach", "forEachOrNull", "repeat"):
            if select.get(key):
                path = select[key] if isinstance(select[key], str) else ", ".join(map(str, select[key]))
                found.append(f"its ViewDefinition's {key} {path} makes a row of each element")
        if select.get("unionAll"):
            found.append("its ViewDefinition's unionAll makes a row of each branch")
        for inner in [*(select.get("select") or []), *(select.get("unionAll") or [])]:
            if isinstance(inner, dict):
                walk(inner)

    for select in view.get("select") or []:
        if isinstance(select, dict):
            walk(select)
    return found


def _unparsed_picks(sql: str, schema: pa.Schema, inputs: dict[str, dict[str, str | None]]) -> Picks:
    """Spark SQL DuckDB's parser refuses is read as text, conservatively: naming an identifier
    column of an input anywhere, or using ``*`` other than ``SELECT [t.]*`` and ``count(*)``, it
    picks people out; every identifier column it outputs is taken as computed."""
    columns = sorted({column for roles in inputs.values() for column, found in roles.items() if identifying(found)})
    if not columns:
        return Picks((), frozenset())
    named = [c for c in columns if re.search(rf"(?<![\w`]){re.escape(c)}(?![\w`])|`{re.escape(c)}`", sql, re.I)]
    stars = re.sub(r"\bcount\s*\(\s*\*\s*\)|\b(?:select|distinct|all)\s+(?:\w+\.)?\*|,\s*(?:\w+\.)?\*(?=\s*[,\s])",
                   "", sql, flags=re.I)
    conditions = []
    if named:
        conditions.append(f"Spark SQL DuckDB cannot parse, naming {', '.join(named)}")
    elif "*" in stars:
        conditions.append("Spark SQL DuckDB cannot parse, using * beyond SELECT *")
    by_name = _by_input_name(schema, inputs)
    return Picks(tuple(conditions), frozenset(c for c, found in by_name.items() if identifying(found)))


def check_own_picks(spec: dict, schema: pa.Schema, roles: dict[str, dict[str, str | None]]) -> None:
    """Refuse sql cells whose own query picks rows by an identifier or by a group's size: masked
    identifiers still compare equal or not (``NOT EXISTS`` another visit that day with another
    encounter id keeps the days of one visit), and suppressed cells keep their keys."""
    try:
        found = sql_picks(str(spec.get("sql", "")), schema, roles, {})
    except Unparsable:
        return
    if found.outer:
        raise IdentifierRefused(f"derivative {spec.get('name')!r}: a subquery or LATERAL join reads the rows "
                                f"around it ({', '.join(sorted(set(found.outer)))}), comparing rows with each other; "
                                f"rule: {FILTER_RULE} — in sql cells choose rows by their own values, or by an "
                                f"uncorrelated IN (SELECT …)", rule="filters single out no one")
    if found.conditions:
        raise IdentifierRefused(f"derivative {spec.get('name')!r}: its query chooses rows by {found.conditions[0]}; "
                                f"rule: {FILTER_RULE} — the cells would list those rows' keys, suppressed or not",
                                rule="filters single out no one")


def check_unpicked(spec: dict, upstream: dict[str, dict]) -> None:
    """Refuse cells (an aggregate, sql cells) over an input whose rows were chosen by an identifier,
    here or further up: its cells would be those people's, and a suppressed cell keeps its
    dimensions (the day, the department), so even hidden ones are the person's history."""
    for alias, privacy in upstream.items():
        for entry in privacy.get("apart", []):
            raise IdentifierRefused(
                f"{_reading(spec, alias, privacy, entry)}, which joins people not on their person keys "
                f"({entry.get('join')}), so its rows are no one person's and its person key may count another "
                f"table's people; rule: {JOIN_RULE}", rule=JOIN_RULE)
        for entry in privacy.get("picks", []):
            raise IdentifierRefused(
                f"{_reading(spec, alias, privacy, entry)}, whose rows are chosen by an identifier "
                f"({entry.get('condition')}); rule: {FILTER_RULE}, here or in an input — the cells would be those "
                "people's (choose rows by a code or a date range; join on person keys; test an identifier only "
                "with IS [NOT] NULL)", rule="filters single out no one")


def check_one_row_per_record(spec: dict, upstream: dict[str, dict], counted: tuple[str, ...]) -> None:
    """Refuse cells over an input derivative whose rows may be several for one record (an unnest,
    a union, a forEach, a join matching several rows; here or further up): a record counted in two
    cells makes their difference a count the suppression never saw (all visits less the ambulatory
    ones: the one inpatient). Only the ``counted`` inputs: a joined lookup is checked as such."""
    for alias in counted:
        privacy = upstream.get(alias) or {}
        for entry in privacy.get("several", []):
            raise Restricted(
                f"{_reading(spec, alias, privacy, entry)}, whose rows may be several for one record "
                f"({entry.get('why')}), so a record would be counted in several cells, and two cells' "
                f"difference is a hidden count; rule: {ONE_CELL_RULE} — count over the records themselves (a code "
                "dimension picks one coding of a resource; a filter picks the rows of one kind)", rule=ONE_CELL_RULE)


def _reading(spec: dict, alias: str, privacy: dict, entry: dict) -> str:
    """'derivative X: input A reads derivative S[, through derivative D]' for a refusal."""
    source = entry.get("derivative")
    via = "" if source == privacy.get("name") else f", through derivative {privacy.get('name')!r}"
    return f"derivative {spec.get('name')!r}: input {alias!r} reads derivative {source!r}{via}"


# --- sql cells ------------------------------------------------------------------------------------------
class Masking:
    """How one build shows a sql cells query's inputs: identifiers as tokens (a salted digest,
    fresh for each build, so tokens only say which values are equal), birth dates as their year,
    dropped columns gone. The same rule on every engine; only the spelling is the dialect's."""

    def __init__(self) -> None:
        self.salt = secrets.token_hex(16)
        self.tags: dict[str, tuple[str, str]] = {}
        """What each token tag stands for: ``{tag: (role, "alias.column, …")}``, for :func:`check_cells`."""
        self._hidden = secrets.token_hex(8)
        self._role_tags: dict[str, str] = {}

    def plain_name(self, alias: str) -> str:
        """The name the unmasked input is kept under beside its masked view: fresh for each build,
        so a query (written before the build) cannot name it (``enc__plain`` could be read, and
        was, where the spec was saved before a derivative input had a schema to check it against)."""
        return f"{alias}__plain_{self._hidden}"

    def column(self, dialect: Dialect, alias: str, column: str, found: str | None,
               type_name: str) -> str | None:
        """The masked value of ``column`` of ``alias`` whose role is ``found`` (its SQL, named as
        the column); None when the column is dropped. Only for columns whose role has a
        ``cell_input`` rule."""
        how = ROLES[found].cell_input if found is not None else None
        if how == "drop":
            return None
        name = dialect.quote(column)
        if how == "year" and (year := dialect.year_start(name, type_name)) is not None:
            return f"{year} AS {name}"
        # one tag per role: the same person's key is the same token in every input, so person-key
        # joins still match (a tag per column made every such join empty)
        tag = self._role_tags.setdefault(str(found), secrets.token_hex(4))
        named = self.tags.get(tag, (str(found), ""))[1]
        self.tags[tag] = (str(found), ", ".join(filter(None, [named, f"{alias}.{column}"])))
        return f"{dialect.token(name, self.salt, TOKEN_OPEN + tag + ':', TOKEN_CLOSE)} AS {name}"


def masked_role(found: str | None) -> bool:
    """Whether a column of this role is shown otherwise to a sql cells query."""
    return found is not None and ROLES[found].cell_input is not None


def mask_inputs(con: duckdb.DuckDBPyConnection, roles: dict[str, dict[str, str | None]]) -> dict[str, tuple[str, str]]:
    """Make each input of a sql cells query show its identifiers as tokens (see :class:`Masking`).

    The plain relation is renamed (:meth:`Masking.plain_name`); ``<alias>`` becomes a view over it. Returns
    what each token tag stands for: ``{tag: (role, "alias.column")}``, for :func:`check_cells`.
    """
    q = DUCKDB.quote
    masking = Masking()
    for alias, columns in roles.items():
        kind = con.execute("SELECT table_type FROM information_schema.tables WHERE table_name = ?",
                           [alias]).fetchone()
        if kind is None:
            continue
        types = {r[0]: r[1] for r in con.execute(f"DESCRIBE {q(alias)}").fetchall()}
        replace, drop = [], []
        for column, found in columns.items():
            if not masked_role(found) or column not in types:
                continue
            masked = masking.column(DUCKDB, alias, column, found, types[column])
            if masked is None:
                drop.append(q(column))
            else:
                replace.append(masked)
        if not replace and not drop:
            continue
        statement = "VIEW" if kind[0] == "VIEW" else "TABLE"
        plain = masking.plain_name(alias)
        con.execute(f"ALTER {statement} {q(alias)} RENAME TO {q(plain)}")
        exclude = f" EXCLUDE ({', '.join(drop)})" if drop else ""
        replaced = f" REPLACE ({', '.join(replace)})" if replace else ""
        con.execute(f"CREATE VIEW {q(alias)} AS SELECT *{exclude}{replaced} FROM {q(plain)}")
    return masking.tags


_TOKEN_TAG = re.compile(TOKEN_OPEN + r"([0-9a-fA-F]{8})")


def check_cells(name: str, table: pa.Table, tags: dict[str, tuple[str, str]]) -> None:
    """Refuse a sql cells result in which any column carries a token (an identifier of an input)."""
    for field in table.schema:
        column = table.column(field.name)
        if pa.types.is_list(field.type) or pa.types.is_large_list(field.type):
            column = pc.list_flatten(column)
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            continue
        hits = pc.filter(column, pc.match_substring(column, TOKEN_OPEN))
        if len(hits):
            found = _TOKEN_TAG.search(str(hits[0].as_py()))
            role_name, source = tags.get(found.group(1).lower(), ("identifier", "?")) if found else \
                ("identifier", "?")
            raise IdentifierRefused(
                f"derivative {name!r}: output column {field.name!r} carries values of input column {source!r}, "
                f"which is {ROLES[role_name].rule()}; rule: a published cell never carries an identifier — "
                "count it instead (count(DISTINCT …)) or leave the count_column out to keep the result "
                "row-level", rule="cells carry no identifiers")


def suppress_cells(spec: dict, table: pa.Table, threshold: int, zero_cells: str = DEFAULT_ZERO_RULE,
                   previous: tuple[pa.Table, pa.Table | None, pa.Table | None, pa.Table | None] | None = None
                   ) -> tuple[pa.Table, pa.Table | None]:
    """Small-cell suppression for sql cells, decided as for aggregates (:mod:`.complementary`):
    a row whose ``people_column`` (else ``count_column``) holds 1 to k-1 is suppressed, with its
    complements along the table's lines. Numeric columns are the measures, the others the
    dimensions; every column but the declared counts is a key of the cell
    (:func:`.kinds.sql.check_counts` refuses anything else computed over a cell's rows).

    Suppressed cells are left out of the table (:data:`.spec.HIDDEN_LEFT_OUT`), not shown with their keys:
    a query chooses its keys freely, so the keys of a small cell can be the secret itself (the days
    of one visit, a group's size), however the query spells them. Every published key then belongs
    to a cell of at least k people, and an absent key reads as suppressed.

    ``previous``: the rows the previous version of the same question showed, those it hid (None
    when it left them out), its unsuppressed cells where this machine kept them and its anchors;
    rows that changed little keep their state and shown rows revised by 1 to k-1 are held
    (:func:`.complementary.carried_states`). Returned with the cells' anchors
    (:func:`.complementary.anchors_table`; None when nothing is suppressed), stored for the
    next version to compare with."""
    declared: dict[str, pa.ChunkedArray] = {}
    for key in ("count_column", "people_column"):
        column = spec.get(key)
        if column is None:
            continue
        if column not in table.column_names:
            raise SpecError(key, f"no output column {column!r}; the query gives: {', '.join(table.column_names)}")
        typ = table.schema.field(column).type
        if not (pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ)):
            raise SpecError(key, f"column {column!r} is {typ}, not a count")
        counts = pc.fill_null(pc.cast(table.column(column), pa.float64()), 0)
        declared[key] = pc.cast(pc.ceil(counts), pa.int64())
    if FLAG in table.column_names:
        raise SpecError("sql", f"an output column named {FLAG!r} is reserved for the suppression flag")
    numeric = [f.name for f in table.schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
               or pa.types.is_decimal(f.type)]
    dims = [n for n in table.column_names if n not in numeric and n != PERIOD]
    records = declared.get("count_column", declared.get("people_column"))
    people = declared.get("people_column", records)
    cells = Cells.from_table(spec["name"], {"group_by": dims, "measures": []}, threshold, table)
    cells.records = records.to_pylist() if records is not None else [0] * table.num_rows
    cells.people = people.to_pylist() if people is not None else [0] * table.num_rows
    counted = counts_of(spec)
    coordinates = ([PERIOD] if PERIOD in table.column_names else []) + dims
    carried = carried_states(table, coordinates, counted, threshold, *previous) if previous is not None else None
    if carried is not None:
        cells.carry(carried)
    hidden = decide(Group([cells], []), zero_cells)[spec["name"]]
    published = publish_cells(table, numeric, hidden)
    anchors = anchors_table(table, coordinates, counted, carried, hidden) if threshold > 0 else None
    return published.filter(pc.invert(published.column(FLAG))), anchors


def cell_roles(spec: dict, table: pa.Table, inputs: dict[str, dict[str, str | None]]) -> dict[str, str | None]:
    """The roles of a sql cells result's columns, its declared counts refused as keys elsewhere
    (see :func:`check_cell_keys`) being values of suppressed cells."""
    roles = output_roles(spec, table.schema, inputs)
    for key in ("count_column", "people_column"):
        if spec.get(key) in roles:
            roles[spec[key]] = "value"
    roles[FLAG] = "value"
    return roles


def check_cell_keys(spec: dict, roles: dict[str, str | None]) -> None:
    """Refuse a sql cells key computed from a count of a group's rows (a window or a GROUP BY in
    an inner query): it would show, beside a suppressed cell, the count suppression hides."""
    declared = {spec.get("count_column"), spec.get("people_column")}
    for column, found in roles.items():
        if found == "count" and column not in declared:
            raise IdentifierRefused(f"derivative {spec['name']!r}: output column {column!r} is "
                                    f"{ROLES['count'].label}: a key carries that count, suppressed cells too; "
                                    f"rule: {COUNT_KEY_RULE}", rule=COUNT_KEY_RULE)


def describe(disclosure: Disclosure, columns: dict[str, str | None], **extra: Any) -> dict:
    """What a version records of its class (its ``privacy`` field)."""
    return {"class": disclosure.kind, "reason": disclosure.reason, "columns": columns, "roles": ROLES_VERSION,
            **extra}
