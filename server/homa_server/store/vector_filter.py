"""AIP-160 filters over documents (`id` and `metadata.<key>`), evaluated in Python.

Documents are searched exactly in numpy after being read (store/vectors.py), so their filter runs on
the decoded metadata: identical semantics on SQLite and PostgreSQL, and on any JSON value type.

Grammar (anything else is INVALID_ARGUMENT on field `filter`, with the position):
    expression  := term { ["AND"] term | "OR" term }   (AND binds tighter than OR)
    term        := ["NOT" | "-"] ( "(" expression ")" | comparison )
    comparison  := field op literal | field ":" literal | field ":" "*"
    field       := "id" | "metadata." key { "." key }   (nested objects)
    literal     := "double-quoted string" | number | true | false | null | bare word (a string)
Semantics: `=` / `!=` compare equal types (numbers numerically, so 3 = 3.0); `<`, `<=`, `>`, `>=`
compare two numbers or two strings, else false; `:` is "contains" for a list value and "=" for
any other value; `field:*` is "present"; a missing field makes every comparison false except `!=`
(which is NOT of `=`). Limits: 2048 characters, 64 comparisons, nesting depth 16.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from homa_server.errors import GatewayError, invalid_field

__all__ = ["DocumentPredicate", "compile_document_filter"]

#: (document id, metadata) -> whether the document matches.
DocumentPredicate = Callable[[str, Mapping[str, Any]], bool]

MAX_CHARS: Final = 2048
MAX_COMPARISONS: Final = 64
MAX_DEPTH: Final = 16

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<op><=|>=|!=|=|<|>|:)
      | (?P<paren>[()])
      | (?P<word>[A-Za-z0-9_.\-+*]+)
    )""",
    re.VERBOSE,
)
_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?")
_FIELD = re.compile(r"id|metadata(\.[A-Za-z0-9_\-]+)+")
_MISSING = object()


def _error(description: str) -> GatewayError:
    return invalid_field("filter", description)


def _tokens(text: str) -> list[tuple[str, str, int]]:
    found: list[tuple[str, str, int]] = []
    position = 0
    while position < len(text):
        if text[position].isspace():
            position += 1
            continue
        match = _TOKEN.match(text, position)
        if match is None or match.lastgroup is None:
            raise _error(f"unexpected character at position {position}")
        found.append((match.lastgroup, match.group(match.lastgroup), match.start(match.lastgroup)))
        position = match.end()
    return found


def _literal(kind: str, text: str) -> object:
    if kind == "string":
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    if _NUMBER.fullmatch(text):
        return float(text) if any(c in text for c in ".eE") else int(text)
    return {"true": True, "false": False, "null": None}.get(text, text)


def _lookup(field: str, doc_id: str, metadata: Mapping[str, Any]) -> object:
    if field == "id":
        return doc_id
    node: object = metadata
    for key in field.split(".")[1:]:
        if not isinstance(node, Mapping) or key not in node:
            return _MISSING
        node = node[key]
    return node


def _same_type(a: object, b: object) -> bool:
    number = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, number) and isinstance(b, number):
        return True
    return type(a) is type(b)


def _equal(value: object, literal: object) -> bool:
    return value is not _MISSING and _same_type(value, literal) and value == literal


def _ordered(value: object, op: str, literal: object) -> bool:
    if value is _MISSING or isinstance(value, bool) or isinstance(literal, bool):
        return False
    if not (
        (isinstance(value, int | float) and isinstance(literal, int | float))
        or (isinstance(value, str) and isinstance(literal, str))
    ):
        return False
    a: Any = value
    b: Any = literal
    return bool({"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op])


def _has(value: object, literal: object) -> bool:
    if isinstance(value, list):
        return any(_equal(item, literal) for item in value)
    return _equal(value, literal)


class _Parser:
    def __init__(self, tokens: list[tuple[str, str, int]]) -> None:
        self._tokens = tokens
        self._at = 0
        self.comparisons = 0

    def peek(self) -> tuple[str, str, int] | None:
        return self._tokens[self._at] if self._at < len(self._tokens) else None

    def take(self) -> tuple[str, str, int]:
        token = self.peek()
        if token is None:
            raise _error("the filter ends too early")
        self._at += 1
        return token

    def done(self) -> bool:
        return self._at >= len(self._tokens)

    def expression(self, depth: int) -> DocumentPredicate:
        if depth > MAX_DEPTH:
            raise _error(f"nesting deeper than {MAX_DEPTH}")
        parts = [self.conjunction(depth)]
        while (token := self.peek()) is not None and token[1] == "OR":
            self.take()
            parts.append(self.conjunction(depth))
        if len(parts) == 1:
            return parts[0]
        return lambda i, m: any(p(i, m) for p in parts)

    def conjunction(self, depth: int) -> DocumentPredicate:
        parts = [self.term(depth)]
        while (token := self.peek()) is not None and token[1] != "OR" and token[1] != ")":
            if token[1] == "AND":
                self.take()
            parts.append(self.term(depth))
        if len(parts) == 1:
            return parts[0]
        return lambda i, m: all(p(i, m) for p in parts)

    def term(self, depth: int) -> DocumentPredicate:
        kind, text, position = self.take()
        if text in ("NOT", "-"):
            inner = self.term(depth)
            return lambda i, m: not inner(i, m)
        if kind == "paren" and text == "(":
            inner = self.expression(depth + 1)
            closing = self.take()
            if closing[1] != ")":
                raise _error(f"expected ) at position {closing[2]}")
            return inner
        if kind == "word" and text.startswith("-") and _FIELD.fullmatch(text[1:]):  # "-field op value"
            negated = self.comparison(text[1:])
            return lambda i, m: not negated(i, m)
        if kind != "word" or not _FIELD.fullmatch(text):
            raise _error(f"expected `id` or `metadata.<key>` at position {position}, got {text!r}")
        return self.comparison(text)

    def comparison(self, field: str) -> DocumentPredicate:
        self.comparisons += 1
        if self.comparisons > MAX_COMPARISONS:
            raise _error(f"more than {MAX_COMPARISONS} comparisons")
        kind, op, position = self.take()
        if kind != "op":
            raise _error(f"expected an operator at position {position}")
        value_kind, value_text, value_position = self.take()
        if value_kind not in ("string", "word"):
            raise _error(f"expected a value at position {value_position}")
        if op == ":" and value_kind == "word" and value_text == "*":
            return lambda i, m: _lookup(field, i, m) is not _MISSING
        literal = _literal(value_kind, value_text)
        if op == "=":
            return lambda i, m: _equal(_lookup(field, i, m), literal)
        if op == "!=":
            return lambda i, m: not _equal(_lookup(field, i, m), literal)
        if op == ":":
            return lambda i, m: _has(_lookup(field, i, m), literal)
        return lambda i, m: _ordered(_lookup(field, i, m), op, literal)


def compile_document_filter(text: str) -> DocumentPredicate | None:
    """The predicate for `text`, or None for an empty filter.

    Raises:
        GatewayError: INVALID_ARGUMENT (field `filter`) for anything outside the grammar.
    """
    if not text.strip():
        return None
    if len(text) > MAX_CHARS:
        raise _error(f"longer than {MAX_CHARS} characters")
    parser = _Parser(_tokens(text))
    predicate = parser.expression(0)
    if not parser.done():
        _, extra, position = parser.take()
        raise _error(f"unexpected {extra!r} at position {position}")
    return predicate
