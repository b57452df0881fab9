"""AIP-160 list filters, compiled to SQLAlchemy conditions with bound parameters only.

Supported subset (anything else is INVALID_ARGUMENT on field `filter`, with the position):
    expression  := term { ["AND"] term | "OR" term }   (AND binds tighter than OR; juxtaposition = AND)
    term        := ["NOT" | "-"] ( "(" expression ")" | comparison )
    comparison  := name op value | labels.<key> ":" "*"
    op          := "=" | "!=" | "<" | "<=" | ">" | ">=" | ":" (":" is "=" except for label presence)
    value       := "double-quoted string" (\\" and \\\\ escapes) | bare word (letters, digits, _ . - : * +)

Field kinds (`FilterField.kind`):
    string  "=", "!=", ":" — a leading and/or trailing `*` is a wildcard (prefix/suffix/contains match);
            `%`, `_` and `\\` in the value match literally.
    int     all comparisons; integer literal.
    bool    "=", "!=" with true/false.
    enum    "=", "!=" with a name from `enum_values` (e.g. ACTIVE or API_KEY_STATE_ACTIVE), compared
            with the column; or from `enum_conditions` (a name -> SQL condition, for a state computed
            from several columns, such as an API key that is EXPIRED).
    time    all comparisons; RFC 3339 timestamp ("2026-11-01T00:00:00Z"), compared in epoch µs.
`labels.<key>` (when a JSON labels column is given) is a string field per key, and `labels.<key>:*` tests
that the key is present. Limits: 2048 characters, 64 comparisons, nesting depth 16.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, cast

from sqlalchemy import ColumnElement, and_, not_, or_
from sqlalchemy.sql.elements import KeyedColumnElement

from homa_server.errors import GatewayError, invalid_field

FieldKind = Literal["string", "int", "bool", "enum", "time"]

MAX_FILTER_CHARS: Final = 2048
MAX_COMPARISONS: Final = 64
MAX_DEPTH: Final = 16

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<op><=|>=|!=|=|<|>|:)
      | (?P<paren>[()])
      | (?P<word>[A-Za-z0-9_.\-*+:]+?)(?=\s|$|[()]|<=|>=|!=|=|<|>|:(?![0-9]))
    )""",
    re.VERBOSE,
)
_LABEL_KEY = re.compile(r"[A-Za-z0-9_.\-/]{1,63}")
_KEYWORDS = frozenset({"AND", "OR", "NOT"})


@dataclass(frozen=True, slots=True)
class FilterField:
    """A filterable field: its column, how values are read, and (enums) the accepted names."""

    column: KeyedColumnElement[Any] | ColumnElement[Any]
    kind: FieldKind = "string"
    enum_values: Mapping[str, int | bool | str] = field(default_factory=dict)
    enum_conditions: Mapping[str, ColumnElement[bool]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: Literal["string", "op", "paren", "word"]
    text: str
    position: int


def _error(description: str) -> GatewayError:
    return invalid_field("filter", description)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        if text[position].isspace():
            position += 1
            continue
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise _error(f"unexpected character at position {position + 1}")
        kind = cast(Literal["string", "op", "paren", "word"], match.lastgroup)
        tokens.append(_Token(kind, match.group(kind), match.start(kind)))
        position = match.end()
    return tokens


def _unquote(token: _Token) -> str:
    if token.kind == "string":
        return re.sub(r"\\(.)", r"\1", token.text[1:-1])
    return token.text


def _like_pattern(value: str) -> tuple[str, bool]:
    """(pattern, is_like) for a string value with optional leading/trailing `*` wildcards."""
    starts, ends = value.startswith("*"), value.endswith("*") and len(value) > 1
    core = value[1 if starts else 0 : -1 if ends else None]
    if not (starts or ends):
        return value, False
    escaped = core.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{'%' if starts else ''}{escaped}{'%' if ends else ''}", True


def _rfc3339_us(value: str) -> int:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise _error(f"{value!r} is not an RFC 3339 timestamp") from None
    if moment.tzinfo is None:
        raise _error(f"{value!r} needs a time zone (for example Z)")
    return int(moment.timestamp() * 1_000_000)


class _Parser:
    def __init__(
        self,
        tokens: list[_Token],
        fields: Mapping[str, FilterField],
        labels: ColumnElement[Any] | None,
    ) -> None:
        self.tokens = tokens
        self.index = 0
        self.fields = fields
        self.labels = labels
        self.comparisons = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise _error("unexpected end of filter")
        self.index += 1
        return token

    def expression(self, depth: int) -> ColumnElement[bool]:
        if depth > MAX_DEPTH:
            raise _error(f"nested deeper than {MAX_DEPTH} levels")
        alternatives = [self.conjunction(depth)]
        while (token := self.peek()) is not None and token.kind == "word" and token.text == "OR":
            self.take()
            alternatives.append(self.conjunction(depth))
        return alternatives[0] if len(alternatives) == 1 else or_(*alternatives)

    def conjunction(self, depth: int) -> ColumnElement[bool]:
        terms = [self.term(depth)]
        while (token := self.peek()) is not None and not (token.kind == "paren" and token.text == ")"):
            if token.kind == "word" and token.text == "OR":
                break
            if token.kind == "word" and token.text == "AND":
                self.take()
            terms.append(self.term(depth))
        return terms[0] if len(terms) == 1 else and_(*terms)

    def term(self, depth: int) -> ColumnElement[bool]:
        token = self.take()
        if (token.kind == "word" and token.text == "NOT") or (token.kind == "word" and token.text == "-"):
            return not_(self.term(depth))
        if token.kind == "word" and token.text.startswith("-") and len(token.text) > 1:
            # "-name = x": negation glued to the name.
            self.tokens[self.index - 1] = _Token("word", token.text[1:], token.position + 1)
            self.index -= 1
            return not_(self.term(depth))
        if token.kind == "paren" and token.text == "(":
            inner = self.expression(depth + 1)
            closing = self.take()
            if not (closing.kind == "paren" and closing.text == ")"):
                raise _error(f"expected ')' at position {closing.position + 1}")
            return inner
        if token.kind != "word" or token.text in _KEYWORDS:
            raise _error(f"expected a field name at position {token.position + 1}")
        return self.comparison(token)

    def comparison(self, name: _Token) -> ColumnElement[bool]:
        self.comparisons += 1
        if self.comparisons > MAX_COMPARISONS:
            raise _error(f"more than {MAX_COMPARISONS} comparisons")
        op = self.take()
        if op.kind != "op":
            raise _error(f"expected an operator after {name.text!r}")
        if self.peek() is None:
            raise _error(f"expected a value after {name.text} {op.text}")
        value_token = self.take()
        if value_token.kind not in ("string", "word") or (
            value_token.kind == "word" and value_token.text in _KEYWORDS
        ):
            raise _error(f"expected a value after {name.text} {op.text}")
        value = _unquote(value_token)
        if name.text.startswith("labels.") and self.labels is not None:
            key = name.text.removeprefix("labels.")
            if not _LABEL_KEY.fullmatch(key):
                raise _error(f"invalid label key {key!r}")
            element: ColumnElement[Any] = self.labels[key].as_string()
            if op.text == ":" and value == "*" and value_token.kind == "word":
                return element.is_not(None)
            return self.compare_string(element, op.text, value, name.text)
        spec = self.fields.get(name.text)
        if spec is None:
            known = ", ".join(sorted(self.fields)) + (", labels.<key>" if self.labels is not None else "")
            raise _error(f"unknown field {name.text!r} (filterable: {known})")
        column = spec.column
        operator = "=" if op.text == ":" else op.text
        if spec.kind == "string":
            return self.compare_string(column, operator, value, name.text)
        if spec.kind == "bool":
            if value.lower() not in ("true", "false") or operator not in ("=", "!="):
                raise _error(f"{name.text} takes = or != with true or false")
            flag = value.lower() == "true"
            return column == flag if operator == "=" else column != flag
        if spec.kind == "enum":
            if operator not in ("=", "!="):
                raise _error(f"{name.text} takes = or !=")
            if value in spec.enum_conditions:
                condition = spec.enum_conditions[value]
                return condition if operator == "=" else not_(condition)
            if value not in spec.enum_values:
                names = ", ".join([*spec.enum_values, *spec.enum_conditions])
                raise _error(f"{name.text}: unknown value {value!r} (one of {names})")
            wanted = spec.enum_values[value]
            return column == wanted if operator == "=" else column != wanted
        number = _rfc3339_us(value) if spec.kind == "time" else self.integer(value, name.text)
        return _ordered(column, operator, number)

    @staticmethod
    def integer(value: str, name: str) -> int:
        try:
            return int(value)
        except ValueError:
            raise _error(f"{name}: {value!r} is not an integer") from None

    @staticmethod
    def compare_string(
        element: ColumnElement[Any], operator: str, value: str, name: str
    ) -> ColumnElement[bool]:
        operator = "=" if operator == ":" else operator
        if operator not in ("=", "!="):
            raise _error(f"{name} takes =, != or :")
        pattern, is_like = _like_pattern(value)
        if is_like:
            condition = element.like(pattern, escape="\\")
            return condition if operator == "=" else not_(condition)
        return element == pattern if operator == "=" else element != pattern


def _ordered(column: ColumnElement[Any], operator: str, value: int) -> ColumnElement[bool]:
    match operator:
        case "=":
            return column == value
        case "!=":
            return column != value
        case "<":
            return column < value
        case "<=":
            return column <= value
        case ">":
            return column > value
        case _:
            return column >= value


def compile_filter(
    text: str,
    fields: Mapping[str, FilterField],
    labels: ColumnElement[Any] | None = None,
) -> ColumnElement[bool] | None:
    """The SQL condition for an AIP-160 `filter`, or None when it is empty.

    Args:
        text: the caller's filter string.
        fields: filterable field names and how to read them.
        labels: a JSON column of string labels, filterable as `labels.<key>`; None to refuse them.

    Raises:
        GatewayError: INVALID_ARGUMENT (field `filter`) naming what is wrong.
    """
    if not text or not text.strip():
        return None
    if len(text) > MAX_FILTER_CHARS:
        raise _error(f"longer than {MAX_FILTER_CHARS} characters")
    if "\x00" in text:
        raise _error("contains a NUL character")
    parser = _Parser(_tokenize(text), fields, labels)
    condition = parser.expression(0)
    leftover = parser.peek()
    if leftover is not None:
        raise _error(f"unexpected {leftover.text!r} at position {leftover.position + 1}")
    return condition
