"""The search language: parsing, error positions, and what each query selects."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from modelvault import InvalidInput, QuerySyntaxError, Registry, Settings
from modelvault.search import search_clause
from modelvault.search.parser import (
    And,
    Comparison,
    Field,
    InList,
    Node,
    Not,
    Or,
    parse_query,
)
from modelvault.store import schema

from .backends import BACKENDS, engine_for, store_url
from .conftest import FakeClock, write_model

pytestmark = pytest.mark.contract


def test_precedence_not_binds_tighter_than_and_than_or() -> None:
    q = parse_query('metrics.a > 1 or not tags.t = "x" and version = 2')
    assert q == Or(
        (
            Comparison(Field("metrics", "a"), ">", 1),
            And(
                (
                    Not(Comparison(Field("tags", "t"), "=", "x")),
                    Comparison(Field("version"), "=", 2),
                )
            ),
        )
    )
    grouped = parse_query('(metrics.a > 1 or tags.t = "x") and version = 2')
    assert isinstance(grouped, And)
    assert isinstance(grouped.items[0], Or)


def test_lists_quotes_and_keys() -> None:
    q = parse_query(
        'model in (\'a\', "b\\"c") and stage not in ("retired") and metrics.`val loss` <= -1.5e-3'
    )
    assert q == And(
        (
            InList(Field("model"), ("a", 'b"c')),
            InList(Field("stage"), ("retired",), negated=True),
            Comparison(Field("metrics", "val loss"), "<=", -1.5e-3),
        )
    )
    assert parse_query("params.lr == 0.1") == Comparison(Field("params", "lr"), "=", 0.1)
    assert parse_query("params.balanced = true") == Comparison(
        Field("params", "balanced"), "=", "true"
    )
    assert parse_query('created_at >= "2026-03-15T10:00Z"') == Comparison(
        Field("created_at"), ">=", "2026-03-15T10:00:00.000000Z"
    )
    assert parse_query("version = 1 AND NOT version = 2") == And(
        (Comparison(Field("version"), "=", 1), Not(Comparison(Field("version"), "=", 2)))
    )


@pytest.mark.parametrize(
    ("query", "position", "message"),
    [
        ("", 0, "empty"),
        ("   ", 3, "empty"),
        ("metrics.auc >", 13, "expected a value"),
        ("metrics.auc > 0.9 and", 21, "expected a field"),
        ('tags.team = "fraud', 12, "unterminated string"),
        ('tags.team = "a\x00b"', 12, "cannot contain NUL"),
        ("(metrics.auc > 1", 0, "never closed"),
        ("metrics.auc > 1)", 15, "unmatched ')'"),
        ("metrics.auc > 1 tags.x = 'y'", 16, "expected 'and', 'or'"),
        ("colour = 'red'", 0, "unknown field 'colour'"),
        ("metrics.auc = 'high'", 14, "is a number"),
        ("stage = 'prod'", 8, "unknown stage 'prod'"),
        ("stage > 'staging'", 6, "only be compared with = and !="),
        ("tags.team = fraud", 12, "values must be quoted"),
        ("metrics > 1", 0, "needs a key"),
        ("version = 'one'", 10, "whole number"),
        ("created_at > 'soon'", 13, "cannot read"),
        ("model in 'a'", 9, "expected '('"),
        ("model in ('a' 'b')", 14, "expected ',' or ')'"),
        ("metrics.auc ~ 1", 12, "unexpected character '~'"),
        ("model not like 'x'", 10, "expected 'in' after 'not'"),
        ('created_at > "99999999999d"', 13, "reaches too far back"),
        ('created_at > "0001-01-01T00:00+01:00"', 13, "out of range"),
        ('created_at > "0999-01-01"', 13, "out of range"),
        ("version = 99999999999999999999", 10, "out of range"),
        ("metrics.auc > 1" + "0" * 400, 14, "out of range"),
        ("tags.team = 99999999999999999999", 12, "is text"),
        ("version = \u0663", 10, "unexpected character"),
        ("(" * 65 + "version = 1" + ")" * 65, 64, "nests deeper"),
        ("not " * 65 + "version = 1", 256, "nests deeper"),
    ],
)
def test_errors_name_the_position(query: str, position: int, message: str) -> None:
    with pytest.raises(QuerySyntaxError, match=re.escape(message)) as info:
        parse_query(query)
    assert info.value.position == position
    assert info.value.pointer().endswith(" " * position + "^")


def test_depth_and_length_are_bounded() -> None:
    with pytest.raises(QuerySyntaxError, match="nests deeper"):
        parse_query("(" * 100 + "version = 1" + ")" * 100)
    with pytest.raises(QuerySyntaxError, match="nests deeper"):
        parse_query("not " * 100 + "version = 1")
    with pytest.raises(QuerySyntaxError, match="longer than 4096"):
        parse_query("version = 1 or " * 400 + "version = 1")


keys = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
texts = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"),
    max_size=12,
)
numbers = st.one_of(
    st.integers(-(10**6), 10**6), st.floats(allow_nan=False, allow_infinity=False, width=32)
)


def _leaf() -> st.SearchStrategy[Node]:
    metric = st.builds(
        Comparison,
        st.builds(Field, st.just("metrics"), keys),
        st.sampled_from(["=", "!=", "<", "<=", ">", ">="]),
        numbers,
    )
    tag = st.builds(
        Comparison, st.builds(Field, st.just("tags"), keys), st.sampled_from(["=", "!="]), texts
    )
    stage = st.builds(
        InList,
        st.just(Field("stage")),
        st.lists(st.sampled_from(["staging", "production"]), min_size=1, max_size=2).map(tuple),
        st.booleans(),
    )
    return st.one_of(metric, tag, stage)


nodes = st.recursive(
    _leaf(),
    lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: And(tuple(xs))),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs))),
        inner.map(Not),
    ),
    max_leaves=8,
)


def _quote(value: object) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def render(node: Node) -> str:
    if isinstance(node, Comparison):
        return f"{node.field} {node.op} {_quote(node.value)}"
    if isinstance(node, InList):
        neg = "not " if node.negated else ""
        return f"{node.field} {neg}in ({', '.join(_quote(v) for v in node.values)})"
    if isinstance(node, And):
        return "(" + " and ".join(render(n) for n in node.items) + ")"
    if isinstance(node, Or):
        return "(" + " or ".join(render(n) for n in node.items) + ")"
    return f"not {render(node.item)}"


def _flat(node: Node) -> Node:
    """Nested and/or of the same kind parse back flattened; compare on that form."""
    if isinstance(node, And | Or):
        kind = type(node)
        items: list[Node] = []
        for child in node.items:
            flat = _flat(child)
            items.extend(flat.items if isinstance(flat, kind) else [flat])
        return kind(tuple(items))
    if isinstance(node, Not):
        return Not(_flat(node.item))
    return node


@settings(max_examples=200, deadline=None)
@given(nodes)
def test_rendered_queries_parse_back_to_the_same_tree(node: Node) -> None:
    assert _flat(parse_query(render(node))) == _flat(node)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_text_only_ever_raises_query_errors(text: str) -> None:
    position = 0
    try:
        parse_query(text)
    except QuerySyntaxError as exc:
        position = exc.position
    except InvalidInput:
        pytest.fail("parse errors must be QuerySyntaxError")
    assert 0 <= position <= len(text)


_CLAUSE = st.tuples(
    st.sampled_from(["metrics.auc", "params.lr", "tags.team", "stage", "label", "created_at"]),
    st.sampled_from(["=", "!=", "<", ">=", "in", "not in"]),
    st.sampled_from(
        [
            *("1", "-2.5e3", "99999999999999999999", "1" + "0" * 400, "1e999", "true"),
            *('"staging"', '"x"', '"99999999999d"', '"0001-01-01T00:00+01:00"', '"0999-01-01"'),
        ]
    ),
).map(lambda t: f"{t[0]} {t[1]} {'(' + t[2] + ')' if 'in' in t[1] else t[2]}")
_SOUP = st.lists(
    st.one_of(_CLAUSE, st.sampled_from(["and", "or", "not", "(", ")", ",", "version", "="])),
    max_size=8,
).map(" ".join)


@pytest.fixture(scope="module", params=BACKENDS)
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    with store_url(request.param, tmp_path_factory.mktemp("soup")) as url:
        engine = engine_for(url)
        schema.metadata.create_all(engine)
        yield engine
        engine.dispose()


@settings(max_examples=400, deadline=None)
@given(st.one_of(_SOUP, nodes.map(render)))
def test_token_soup_parses_compiles_and_runs_or_fails_cleanly(engine: Engine, text: str) -> None:
    try:
        clause = search_clause(text)
    except QuerySyntaxError:
        return
    v, m, p = schema.versions, schema.models, schema.projects
    joined = v.join(m, v.c.model_id == m.c.id).join(p, m.c.project_id == p.c.id)
    with engine.connect() as conn:
        conn.execute(select(v.c.id).select_from(joined).where(clause)).all()


def _fill(reg: Registry, bob: Registry, tmp_path: Path, clock: FakeClock) -> Registry:
    rows = [
        ("fraud", {"lr": 0.1, "algo": "gbm"}, {"auc": 0.95, "f1": 0.7}, {"team": "risk"}),
        ("fraud", {"lr": 0.3, "algo": "rf"}, {"auc": 0.88}, {"team": "risk", "gpu": "yes"}),
        ("churn", {"lr": 0.1}, {"auc": 0.91}, {"team": "growth"}),
        ("churn", {"algo": "x' OR 1=1 --"}, {}, {"team": "x' OR 1=1 --"}),
    ]
    for i, (model, params, metrics, tags) in enumerate(rows):
        clock.advance(days=1)
        reg.register(
            model,
            write_model(tmp_path, f"m{i}", b"%d" % i),
            params=params,
            metrics=metrics,
            tags=tags,
            capture_environment=False,
        )
    reg.promote("fraud:1", "staging")
    bob.approve("fraud:1")
    reg.promote("fraud:1", "production", reason="go")
    reg.set_alias("churn", "champion", "1")
    return reg


@pytest.fixture
def catalog(
    reg: Registry, as_user: Callable[[str], Registry], tmp_path: Path, clock: FakeClock
) -> Registry:
    return _fill(reg, as_user("bob"), tmp_path, clock)


@pytest.fixture(scope="module", params=BACKENDS)
def shared_catalog(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registry]:
    """One catalog per backend, built once, for the cases that only read it."""
    home, clock = tmp_path_factory.mktemp("catalog"), FakeClock()
    with store_url(request.param, home) as url:
        settings = Settings.from_env(env={"MODELVAULT_DB": url}, home=home, actor="alice")
        with (
            Registry(settings=settings, clock=clock) as reg,
            Registry(settings=settings, actor="bob", clock=clock) as bob,
        ):
            yield _fill(reg, bob, home, clock)


def _found(reg: Registry, query: str) -> list[str]:
    return [f"{v.model}:{v.number}" for v in reg.search(query)]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("metrics.auc > 0.9", ["churn:1", "fraud:1"]),
        ("metrics.auc > 0.9 and tags.team = 'risk'", ["fraud:1"]),
        ("metrics.auc < 0.9 or stage = 'production'", ["fraud:1", "fraud:2"]),
        ("not metrics.auc > 0.9", ["churn:2", "fraud:2"]),
        ("metrics.f1 != 0.7", []),
        ("params.lr = 0.1", ["churn:1", "fraud:1"]),
        ("params.algo = 'gbm'", ["fraud:1"]),
        ("params.lr >= 0.2", ["fraud:2"]),
        ("tags.gpu = 'yes'", ["fraud:2"]),
        ("tags.team in ('growth', 'risk')", ["churn:1", "fraud:1", "fraud:2"]),
        ("stage = 'development'", ["churn:1", "churn:2", "fraud:2"]),
        ("stage != 'development'", ["fraud:1"]),
        ("stage in ('production', 'staging')", ["fraud:1"]),
        ("alias = 'champion'", ["churn:1"]),
        ("alias != 'champion' and model = 'churn'", ["churn:2"]),
        ("model = 'fraud' and version > 1", ["fraud:2"]),
        ("created_by = 'alice' and version = 1", ["churn:1", "fraud:1"]),
        ("created_at < '2026-03-03T12:00Z'", ["fraud:1", "fraud:2"]),
        ("created_at >= '2026-03-04T00:00Z'", ["churn:1", "churn:2"]),
        ("kind = 'model' and model not in ('fraud')", ["churn:1", "churn:2"]),
        ('tags.team = "x\' OR 1=1 --"', ["churn:2"]),
        ("tags.team = \"' OR ''='\"", []),
        ("params.missing = 1", []),
        ("not params.missing = 1 and model = 'churn'", ["churn:1", "churn:2"]),
        ("metrics.auc < 99999999999999999999", ["churn:1", "fraud:1", "fraud:2"]),
        ("label != '1.0.0'", []),
        ("not label = '1.0.0'", ["churn:1", "churn:2", "fraud:1", "fraud:2"]),
        ("label not in ('1.0.0') and model = 'fraud'", ["fraud:1", "fraud:2"]),
    ],
)
def test_queries_select_the_right_versions(
    shared_catalog: Registry, query: str, expected: list[str]
) -> None:
    assert _found(shared_catalog, query) == expected


def test_search_is_scoped_to_the_project(catalog: Registry, tmp_path: Path) -> None:
    catalog.register(
        "fraud",
        write_model(tmp_path, "o", b"o"),
        metrics={"auc": 0.99},
        project="other",
        capture_environment=False,
    )
    assert _found(catalog, "metrics.auc > 0.98") == []
    assert [v.ref for v in catalog.search("metrics.auc > 0.98", all_projects=True)] == [
        "other/fraud:1"
    ]
