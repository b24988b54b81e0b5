"""Gate rules: ``auc >= 0.90``, ``p95_latency_ms <= 50``, ``auc >= production.auc - 0.005``.

A rule compares one value of the version with a number, or with the same kind of value of
the current production version, optionally shifted (``+``/``-``) or scaled (``*``).
Parsing errors say what was expected; evaluation never raises for a missing value, it fails
the rule and says which value was missing.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .errors import InvalidInput

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}
_KEY = r"[A-Za-z0-9_][A-Za-z0-9_./-]*?"
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_RULE = re.compile(rf"^\s*(?P<key>{_KEY})\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<rhs>.*?)\s*$")
_PROD = re.compile(rf"^production\.(?P<key>{_KEY})\s*(?:(?P<arith>[-+*])\s*(?P<num>{_NUMBER}))?$")


@dataclass(frozen=True, slots=True)
class Rule:
    text: str
    key: str
    op: str
    number: float | None = None  # compare with this number, or with production:
    production_key: str | None = None
    arith: str | None = None
    operand: float = 0.0

    @property
    def compares_production(self) -> bool:
        return self.production_key is not None

    def threshold(self, production: Mapping[str, float]) -> float | None:
        if self.production_key is None:
            return self.number
        base = production.get(self.production_key)
        if base is None:
            return None
        if self.arith == "+":
            return base + self.operand
        if self.arith == "-":
            return base - self.operand
        if self.arith == "*":
            return base * self.operand
        return base

    def holds(self, value: float, threshold: float) -> bool:
        return _OPS[self.op](value, threshold)


def parse_rule(text: str) -> Rule:
    if not isinstance(text, str):
        raise InvalidInput(f"a gate rule must be text such as 'auc >= 0.9', got {text!r}")
    found = _RULE.match(text)
    if found is None or not found.group("key"):
        raise InvalidInput(
            f"gate rule {text!r}: expected METRIC OP VALUE, e.g. 'auc >= 0.9' "
            "(OP is one of >= <= > < == !=)"
        )
    key, op, rhs = found.group("key"), found.group("op"), found.group("rhs")
    if re.fullmatch(_NUMBER, rhs):
        number = float(rhs)
        if not math.isfinite(number):
            raise InvalidInput(f"gate rule {text!r}: the value must be a finite number")
        return Rule(text.strip(), key, op, number=number)
    prod = _PROD.match(rhs)
    if prod is None:
        raise InvalidInput(
            f"gate rule {text!r}: after {op!r} expected a number or production.METRIC "
            "optionally followed by + - or * and a number"
        )
    return Rule(
        text.strip(),
        key,
        op,
        production_key=prod.group("key"),
        arith=prod.group("arith"),
        operand=float(prod.group("num")) if prod.group("num") else 0.0,
    )


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def check_rule(
    rule: Rule, values: Mapping[str, float], production: Mapping[str, float] | None
) -> tuple[str, str, bool]:
    """(required, actual, passed) for one rule; *production* is None when no version holds
    production, in which case comparisons with it pass (there is nothing to be worse than)."""
    if rule.compares_production and production is None:
        return f"{rule.op} production.{rule.production_key}", "no production version", True
    threshold = rule.threshold(production or {})
    if threshold is None:
        return (
            f"{rule.op} production.{rule.production_key}",
            f"production has no {rule.production_key}",
            False,
        )
    required = f"{rule.op} {_fmt(threshold)}"
    if rule.compares_production and production is not None and rule.production_key:
        base = _fmt(production[rule.production_key])
        shift = f" {rule.arith} {_fmt(rule.operand)}" if rule.arith else ""
        required += f" (production {rule.production_key} {base}{shift})"
    value = values.get(rule.key)
    if value is None:
        return required, f"missing ({rule.key} not recorded)", False
    return required, _fmt(value), rule.holds(value, threshold)
