"""FHIRPath tokenizer and parser producing a small tuple AST for the SQL compiler.

The parser is our own so that every accepted expression is one the compiler understands and every
rejected one gets a precise message; nothing here evaluates FHIRPath.

AST nodes (tuples, first item is the tag):
  ("lit", fhir_type, python_value)   literal: string, integer, decimal, boolean, date, dateTime, time
  ("empty",)                          {}
  ("this",) ("index",) ("total",)     $this / $index / $total
  ("const", name)                     %name
  ("member", base_or_None, name)      navigation; base None means the current context
  ("call", base_or_None, name, args)  function invocation
  ("indexer", base, expr)             base[expr]
  ("neg", expr)                       unary minus
  ("op", operator, left, right)       binary operator
  ("type", "is"|"as", expr, typename) type operators
"""

from __future__ import annotations

import re

from .errors import ViewError

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<datetime>@T?\d[\d\-:T.+Z]*)
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<delimited>`(?:[^`\\]|\\.)*`)
  | (?P<special>\$this|\$index|\$total)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|!=|!~|[.\[\](),=~<>|+\-*/&%{}])
    """,
    re.VERBOSE | re.DOTALL,
)

_ESCAPES = {"'": "'", '"': '"', "`": "`", "\\": "\\", "/": "/", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}

# Binding power of each binary operator, per the FHIRPath operator precedence table.
_BINARY = {
    "implies": 1,
    "or": 2,
    "xor": 2,
    "and": 3,
    "in": 4,
    "contains": 4,
    "=": 5,
    "~": 5,
    "!=": 5,
    "!~": 5,
    "<": 6,
    ">": 6,
    "<=": 6,
    ">=": 6,
    "|": 7,
    "is": 8,
    "as": 8,
    "+": 9,
    "-": 9,
    "&": 9,
    "*": 10,
    "/": 10,
    "div": 10,
    "mod": 10,
}


def _unescape(body: str, expr: str) -> str:
    out = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1] if i + 1 < len(body) else ""
        if nxt == "u" and re.fullmatch(r"[0-9A-Fa-f]{4}", body[i + 2 : i + 6]):
            out.append(chr(int(body[i + 2 : i + 6], 16)))
            i += 6
        elif nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            raise ViewError(f"invalid escape sequence in FHIRPath {expr!r}")
    return "".join(out)


def _tokenize(expr: str) -> list[tuple[str, object]]:
    tokens: list[tuple[str, object]] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m:
            raise ViewError(f"cannot parse FHIRPath {expr!r}: unexpected {expr[pos:pos + 10]!r}")
        pos = m.end()
        kind = m.lastgroup
        text = m.group()
        if kind == "ws":
            continue
        if kind == "string":
            tokens.append(("string", _unescape(text[1:-1], expr)))
        elif kind == "delimited":
            tokens.append(("ident", _unescape(text[1:-1], expr)))
        elif kind == "number":
            tokens.append(("number", text))
        elif kind == "datetime":
            tokens.append(("datetime", text[1:]))
        elif kind in ("special", "op"):
            tokens.append(("op", text))
        else:
            tokens.append(("ident", text))
    tokens.append(("eof", None))
    return tokens


class _Parser:
    """Pratt parser over the token list; one instance per expression."""

    def __init__(self, expr: str) -> None:
        self.expr = expr
        self.tokens = _tokenize(expr)
        self.pos = 0

    def fail(self, why: str) -> ViewError:
        return ViewError(f"cannot parse FHIRPath {self.expr!r}: {why}")

    def peek(self) -> tuple[str, object]:
        return self.tokens[self.pos]

    def take(self) -> tuple[str, object]:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def expect(self, op: str) -> None:
        kind, value = self.take()
        if kind != "op" or value != op:
            raise self.fail(f"expected {op!r}, found {value!r}")

    def parse(self) -> tuple:
        node = self.expression(0)
        if self.peek()[0] != "eof":
            raise self.fail(f"unexpected {self.peek()[1]!r}")
        return node

    def expression(self, min_bp: int) -> tuple:
        left = self.unary()
        while True:
            kind, value = self.peek()
            if kind not in ("op", "ident") or value not in _BINARY:
                return left
            bp = _BINARY[value]
            if bp <= min_bp:
                return left
            self.take()
            if value in ("is", "as"):
                left = ("type", value, left, self.type_name())
            else:
                left = ("op", value, left, self.expression(bp))

    def type_name(self) -> str:
        kind, value = self.take()
        if kind != "ident":
            raise self.fail("expected a type name")
        name = str(value)
        while self.peek() == ("op", "."):
            self.take()
            kind, value = self.take()
            if kind != "ident":
                raise self.fail("expected a type name")
            name = str(value)
        return name

    def unary(self) -> tuple:
        kind, value = self.peek()
        if kind == "op" and value in ("+", "-"):
            self.take()
            inner = self.unary()
            return ("neg", inner) if value == "-" else inner
        return self.postfix(self.term())

    def postfix(self, node: tuple) -> tuple:
        while True:
            kind, value = self.peek()
            if kind == "op" and value == ".":
                self.take()
                node = self.invocation(node)
            elif kind == "op" and value == "[":
                self.take()
                index = self.expression(0)
                self.expect("]")
                node = ("indexer", node, index)
            else:
                return node

    def invocation(self, base: tuple | None) -> tuple:
        kind, value = self.take()
        if kind == "op" and value in ("$this", "$index", "$total") and base is None:
            return (str(value)[1:],)
        if kind != "ident":
            raise self.fail(f"expected a name, found {value!r}")
        if self.peek() == ("op", "("):
            self.take()
            args: list[tuple] = []
            if self.peek() != ("op", ")"):
                args.append(self.expression(0))
                while self.peek() == ("op", ","):
                    self.take()
                    args.append(self.expression(0))
            self.expect(")")
            return ("call", base, str(value), args)
        return ("member", base, str(value))

    def term(self) -> tuple:
        kind, value = self.peek()
        if kind == "string":
            self.take()
            return ("lit", "string", value)
        if kind == "number":
            self.take()
            text = str(value)
            if self.peek()[0] == "string" or self.peek()[1] in ("year", "years", "day", "days"):
                raise self.fail("quantity literals are not supported")
            return ("lit", "decimal", text) if "." in text else ("lit", "integer", int(text))
        if kind == "datetime":
            self.take()
            text = str(value)
            if text.startswith("T"):
                return ("lit", "time", text[1:])
            return ("lit", "dateTime" if "T" in text else "date", text)
        if kind == "op" and value == "(":
            self.take()
            inner = self.expression(0)
            self.expect(")")
            return inner
        if kind == "op" and value == "{":
            self.take()
            self.expect("}")
            return ("empty",)
        if kind == "op" and value == "%":
            self.take()
            kind, name = self.take()
            if kind not in ("ident", "string"):
                raise self.fail("expected a constant name after '%'")
            return ("const", str(name))
        if kind == "ident" and value in ("true", "false"):
            self.take()
            return ("lit", "boolean", value == "true")
        if kind == "ident" or (kind == "op" and value in ("$this", "$index", "$total")):
            return self.invocation(None)
        raise self.fail(f"unexpected {value!r}" if value is not None else "unexpected end of expression")


def parse(expr: object) -> tuple:
    """Parse one FHIRPath expression; raises ViewError("cannot parse FHIRPath ...") on bad syntax."""
    if not isinstance(expr, str):
        raise ViewError(f"FHIRPath must be a string, got {type(expr).__name__}")
    if not expr.strip():
        raise ViewError("FHIRPath is empty")
    return _Parser(expr).parse()
