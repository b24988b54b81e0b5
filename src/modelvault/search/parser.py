"""The search language: tokens, grammar and type rules, parsed into a small AST.

    query   := or
    or      := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | primary
    primary := "(" or ")" | field OP value | field ["not"] "in" "(" value ("," value)* ")"

Every error is a QuerySyntaxError carrying the 0-based position of the offending token.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import InvalidInput, QuerySyntaxError
from ..lifecycle import STAGES
from ..timeutil import parse_time, to_text

MAX_QUERY_CHARS = 4096
MAX_DEPTH = 64
_INT64 = 2**63

PREFIXED = ("params", "metrics", "tags")
PLAIN = (
    "alias",
    "created_at",
    "created_by",
    "digest",
    "kind",
    "label",
    "model",
    "project",
    "stage",
    "version",
)
OPERATORS = ("=", "!=", "<", "<=", ">", ">=")
_EQUALITY_ONLY = {"stage", "alias", "kind", "digest"}

Value = str | float | int | bool


@dataclass(frozen=True, slots=True)
class Field:
    namespace: str  # "params", "metrics", "tags", or the plain field's own name
    key: str | None = None

    def __str__(self) -> str:
        return f"{self.namespace}.{self.key}" if self.key is not None else self.namespace


@dataclass(frozen=True, slots=True)
class Comparison:
    field: Field
    op: str
    value: Value


@dataclass(frozen=True, slots=True)
class InList:
    field: Field
    values: tuple[Value, ...]
    negated: bool = False


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Node


Node = Comparison | InList | And | Or | Not


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # word, string, number, op, lparen, rparen, comma, key, end
    text: str
    pos: int
    value: Value | None = None


_TOKEN = re.compile(
    r"""(?P<ws>\s+)
      |(?P<number>-?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][+-]?[0-9]+)?(?![A-Za-z_]))
      |(?P<word>[A-Za-z_][A-Za-z0-9_.\-/]*)
      |(?P<op>==|!=|<=|>=|=|<|>)
      |(?P<lparen>\()|(?P<rparen>\))|(?P<comma>,)
      |(?P<quote>["'`])""",
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'", "`": "`"}


def _string(text: str, start: int) -> tuple[str, int]:
    """Read a quoted string starting at *start* (the quote); returns value and end offset."""
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(_ESCAPES.get(text[i + 1], text[i + 1]))
            i += 2
            continue
        if ch == quote:
            value = "".join(out)
            if "\x00" in value:  # nothing stored holds one, and PostgreSQL cannot compare it
                raise QuerySyntaxError(
                    "quoted text cannot contain NUL characters", query=text, position=start
                )
            return value, i + 1
        out.append(ch)
        i += 1
    what = "key" if quote == "`" else "string"
    raise QuerySyntaxError(f"unterminated {what}", query=text, position=start)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        m = _TOKEN.match(text, i)
        if m is None:
            raise QuerySyntaxError(f"unexpected character {text[i]!r}", query=text, position=i)
        kind = m.lastgroup or ""
        if kind == "ws":
            i = m.end()
            continue
        if kind == "quote":
            value, end = _string(text, i)
            tokens.append(Token("key" if text[i] == "`" else "string", text[i:end], i, value))
            i = end
            continue
        raw = m.group()
        if kind == "number":
            number: float | int = float(raw) if any(c in raw for c in ".eE") else int(raw)
            tokens.append(Token("number", raw, i, number))
        else:
            tokens.append(Token(kind, raw, i))
        i = m.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    def error(self, message: str, token: Token | None = None) -> QuerySyntaxError:
        token = token or self.peek()
        return QuerySyntaxError(message, query=self.text, position=token.pos)

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        return token.kind == "word" and token.text.lower() == word

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise self.error("the query is empty")
        node = self.parse_or()
        token = self.peek()
        if token.kind == "rparen":
            raise self.error("unmatched ')'")
        if token.kind != "end":
            raise self.error(f"expected 'and', 'or' or the end of the query, found {token.text!r}")
        return node

    def parse_or(self) -> Node:
        items = [self.parse_and()]
        while self.keyword("or"):
            self.take()
            items.append(self.parse_and())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def parse_and(self) -> Node:
        items = [self.parse_not()]
        while self.keyword("and"):
            self.take()
            items.append(self.parse_not())
        return items[0] if len(items) == 1 else And(tuple(items))

    def parse_not(self) -> Node:
        if self.keyword("not"):
            return Not(self.nested(self.parse_not, self.take()))
        return self.parse_primary()

    def nested(self, parse: Callable[[], Node], opening: Token) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"the query nests deeper than {MAX_DEPTH} levels", opening)
        try:
            return parse()
        finally:
            self.depth -= 1

    def parse_primary(self) -> Node:
        token = self.peek()
        if token.kind == "lparen":
            node = self.nested(self.parse_or, self.take())
            if self.peek().kind != "rparen":
                raise self.error("'(' is never closed", token)
            self.take()
            return node
        field = self.parse_field()
        if self.keyword("in") or self.keyword("not"):
            negated = self.take().text.lower() == "not"
            if negated and not self.keyword("in"):
                raise self.error("expected 'in' after 'not'")
            if negated:
                self.take()
            return InList(field, self.parse_list(field), negated)
        op_token = self.peek()
        if op_token.kind != "op":
            raise self.error(
                f"expected an operator ({', '.join(OPERATORS)}) or 'in' after {field}, "
                f"found {op_token.text or 'the end'!r}"
            )
        self.take()
        op = "=" if op_token.text == "==" else op_token.text
        if op not in ("=", "!=") and field.namespace in _EQUALITY_ONLY:
            raise self.error(f"{field} can only be compared with = and !=", op_token)
        return Comparison(field, op, self.parse_value(field))

    def parse_field(self) -> Field:
        token = self.take()
        if token.kind != "word":
            shown = token.text or "the end"
            raise self.error(f"expected a field such as metrics.auc, found {shown!r}", token)
        name = token.text
        head, dot, key = name.partition(".")
        if head in PREFIXED:
            if not dot:
                raise self.error(f"{head} needs a key, such as {head}.NAME", token)
            if not key:
                if self.peek().kind != "key":
                    raise self.error(f"{head} needs a key after the dot", token)
                key = str(self.take().value)
            if not key:
                raise self.error(f"{head} needs a non-empty key", token)
            return Field(head, key)
        if name in PLAIN:
            return Field(name)
        known = ", ".join([*(f"{p}.KEY" for p in PREFIXED), *PLAIN])
        raise self.error(f"unknown field {name!r}; known fields: {known}", token)

    def parse_list(self, field: Field) -> tuple[Value, ...]:
        if self.peek().kind != "lparen":
            raise self.error("expected '(' after 'in'")
        opening = self.take()
        values = [self.parse_value(field)]
        while self.peek().kind == "comma":
            self.take()
            values.append(self.parse_value(field))
        if self.peek().kind != "rparen":
            if self.peek().kind == "end":
                raise self.error("'(' is never closed", opening)
            raise self.error(f"expected ',' or ')' in the list, found {self.peek().text!r}")
        self.take()
        return tuple(values)

    def parse_value(self, field: Field) -> Value:
        token = self.take()
        if token.kind == "word" and token.text.lower() in ("true", "false"):
            value: Value = token.text.lower() == "true"
        elif token.kind in ("string", "number"):
            assert token.value is not None
            value = token.value
        elif token.kind == "word":
            raise self.error(f'values must be quoted: write "{token.text}"', token)
        else:
            raise self.error(
                f"expected a value after {field}, found {token.text or 'the end'!r}", token
            )
        return self.check_type(field, self.check_range(field, value, token), token)

    def check_range(self, field: Field, value: Value, token: Token) -> Value:
        """Integers beyond 64 bits cannot be bound (SQLite raises); numbers compare as floats."""
        if isinstance(value, bool) or not isinstance(value, int) or -_INT64 <= value < _INT64:
            return value
        if field.namespace in ("metrics", "params"):
            try:
                return float(value)
            except OverflowError:
                pass
        elif field.namespace != "version":
            return value  # check_type names the type error
        raise self.error(f"number {token.text} is out of range", token)

    def check_type(self, field: Field, value: Value, token: Token) -> Value:
        ns = field.namespace
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if ns == "metrics" and not numeric:
            raise self.error(f"{field} is a number; compare it with a number", token)
        if ns == "version" and not (isinstance(value, int) and not isinstance(value, bool)):
            raise self.error("version compares with a whole number", token)
        textual = ("tags", "model", "project", "created_by", "label", "alias", "kind", "digest")
        if ns in textual and not isinstance(value, str):
            raise self.error(f"{field} is text; quote the value", token)
        if ns == "stage" and value not in STAGES:
            raise self.error(
                f"unknown stage {value!r}: choose one of {', '.join(sorted(STAGES))}", token
            )
        if ns == "created_at":
            if not isinstance(value, str):
                raise self.error("created_at compares with a quoted time", token)
            try:
                stored = to_text(parse_time(value, field="created_at"))
            except InvalidInput as exc:
                raise self.error(exc.message, token) from None
            except (ValueError, OverflowError):  # e.g. "99999999999d", year 1 at +01:00
                stored = ""
            if len(stored) != 27:  # stored times are fixed-width; years before 1000 are not
                raise self.error(f"created_at: time {value!r} is out of range", token)
            return stored
        if ns == "params" and isinstance(value, bool):
            return "true" if value else "false"
        return value


def parse_query(text: str) -> Node:
    if not isinstance(text, str):
        raise QuerySyntaxError("the query must be text", query=str(text), position=0)
    if len(text) > MAX_QUERY_CHARS:
        raise QuerySyntaxError(
            f"the query is longer than {MAX_QUERY_CHARS} characters",
            query=text[:80],
            position=0,
        )
    return _Parser(text).parse()
