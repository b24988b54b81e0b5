"""The native part of `audit verify`'s scan (src/modelvault/_fastscan.c): built by the install,
and giving exactly what the Python scan gives, on clean and on tampered logs (it only ever
accepts events; anything it cannot accept, Python judges)."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelvault import Registry, Settings, auditscan, merkle
from modelvault.audit import append_batch
from modelvault.canonical import canonical_json
from modelvault.eventhash import event_hash
from modelvault.store import schema
from modelvault.store.engine import GENESIS_HASH

from .test_audit_fast import _drafts

native = auditscan._native


def test_the_native_part_is_built_and_used() -> None:
    # CI's install builds it (setup.py); without it `audit verify` runs at Python's pace
    try:
        from modelvault import _fastscan
    except ImportError as exc:
        pytest.fail(
            f"the native audit scan is not built ({exc}): `make test` builds it, or"
            " `python setup.py build_ext --inplace` (it needs gcc, libsqlite3-dev, libssl-dev)"
        )
    assert native is _fastscan
    assert (
        schema.audit_events.name,
        schema.audit_personal.name,
        schema.audit_tree.name,
    ) == (auditscan._E, auditscan._P, auditscan._T)


# -- canonical JSON: the native check says yes only where Python's says yes ------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_what_canonical_json_writes_is_canonical_to_both(value: Any) -> None:
    text = canonical_json(value).decode()
    assert auditscan._canonical_text(text) is True
    assert native is not None and native.canonical(text) is True


@settings(max_examples=300, deadline=None)
@given(
    json_values,
    st.sampled_from([None, 0, 1]),
    st.sampled_from([(",", ":"), (", ", ": "), (",", ": ")]),
    st.booleans(),
    st.booleans(),
)
def test_other_spellings_get_python_s_answer(
    value: Any, indent: int | None, separators: tuple[str, str], keys: bool, ascii_: bool
) -> None:
    text = json.dumps(
        value, indent=indent, separators=separators, sort_keys=keys, ensure_ascii=ascii_
    )
    assert native is not None
    assert native.canonical(text) is auditscan._canonical_text(text)


@settings(max_examples=500, deadline=None)
@given(
    st.from_regex(r"-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,20})?([eE][-+]?[0-9]{1,3})?", fullmatch=True)
    | st.floats(allow_nan=False).map(repr)
)
def test_numbers_get_python_s_answer(text: str) -> None:
    assert native is not None
    for spelled in (text, f"[{text}]", f'{{"k":{text}}}'):
        assert native.canonical(spelled) is auditscan._canonical_text(spelled)


EDGES = [
    "-0",
    "0",
    "-1",
    "01",
    "1.0",
    "1.5",
    "-0.0",
    "1e5",
    "1E5",
    "100000.0",
    "1e+16",
    "1e16",
    "1e-07",
    "1e-7",
    "5e-324",
    "1e400",
    "-1e400",
    "NaN",
    "Infinity",
    "-Infinity",
    "1.",
    ".5",
    "2.50",
    "0.1",
    "0.10000000000000001",
    "1" * 4300,
    "1" * 4301,
    "-" + "1" * 4300,
    '"\\u0041"',
    '"\\/"',
    '"\\u001F"',
    '"\\u001f"',
    '"\\u0008"',
    '"\\b"',
    '"\\u000a"',
    '"\\n"',
    '"\\u007f"',
    '"\x7f"',
    '"\x1f"',
    '"\\ud800"',
    '"\\ud83d\\ude00"',
    '"\U0001f600"',
    '"é"',
    '"\\"',
    '"\\\\"',
    '"\\x"',
    '"',
    '""',
    "''",
    "[1,]",
    "[,1]",
    "[]",
    "[ ]",
    "{}",
    "{ }",
    '{"a":1,"a":2}',
    '{"b":1,"a":2}',
    '{"a":1,"b":2}',
    '{"a":1,}',
    '{"a"1}',
    '{"é":1,"z":2}',
    '{"z":1,"é":2}',
    '{"":1}',
    '{"\\u0000":1,"a":2}',
    '{"a":1,"\\u0000":2}',
    '{"ab":1,"a":2}',
    '{"a":1,"ab":2}',
    "true",
    "false",
    "null",
    "True",
    "nul",
    "truee",
    " 1",
    "1 ",
    "[1] ",
    "[" * 150 + "]" * 150,
    "[" * 250 + "]" * 250,
    "[" * 250 + "]" * 249,
    "",
    "1 2",
    '{"a":[}',
]


@pytest.mark.parametrize("text", EDGES)
def test_edge_cases_get_python_s_answer(text: str) -> None:
    assert native is not None
    python = auditscan._canonical_text(text)
    if text.startswith("[" * 250):  # deeper than the native check goes: it says no
        assert native.canonical(text) is False
        return
    assert native.canonical(text) is python


# -- the scan: the same Segment either way ---------------------------------------------------


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[Registry]:
    settings_ = Settings.from_env(
        env={"MODELVAULT_CHECKPOINT_EVERY": "0"}, home=tmp_path / "home", actor="alice"
    )
    reg = Registry(settings=settings_)
    reg.init()
    yield reg
    reg.close()


def _db(reg: Registry) -> str:
    return str(reg.settings.home / "registry.db")


def _fill(reg: Registry, blocks: int) -> None:
    drafts = _drafts()
    total, n = blocks * auditscan.BLOCK + 321, 0
    actors = ["alice", 'ä "b" \x01', "漢字"]
    while n < total:
        batch = [drafts[(n + k) % len(drafts)] for k in range(min(600, total - n))]
        with reg._ctx.store.write() as conn:
            append_batch(conn, batch, actor=actors[n % 3], at=reg._ctx.now())
        n += len(batch)
    assert reg.checkpoint() is not None


def _scan(reg: Registry, start: int, end: int, **extra: Any) -> tuple[Any, int]:
    """(the Segment's fields, how many events Python judged)."""
    fed = 0
    original = auditscan._Scan.feed

    def counting(self: auditscan._Scan, row: tuple[Any, ...]) -> bool:
        nonlocal fed
        fed += 1
        return original(self, row)

    conn = sqlite3.connect(_db(reg), isolation_level=None)
    try:
        tree = conn.execute("SELECT max(idx) + 1 FROM mv_audit_tree WHERE level = 0").fetchone()
        erased = set(extra.pop("erased", set()))
        cursor = conn.cursor()
        auditscan._Scan.feed = counting  # type: ignore[method-assign]
        try:
            segment = auditscan.scan(
                cursor,
                start,
                end,
                prev=GENESIS_HASH if start == 1 else None,
                tree_size=tree[0] or 0,
                wanted=[5, 4096, 5000, 8192, end - 7, end],
                erased=erased,
                **extra,
            )
        finally:
            auditscan._Scan.feed = original  # type: ignore[method-assign]
    finally:
        conn.close()
    fields = (
        segment.good,
        segment.good_hash,
        segment.first_prev,
        segment.personal,
        segment.bad_leaf,
        segment.blocks,
        segment.parts,
    )
    return fields, fed


def _both(reg: Registry, start: int = 1) -> tuple[Any, int]:
    head = sqlite3.connect(_db(reg)).execute("SELECT seq FROM mv_audit_head").fetchone()[0]
    python, fed_python = _scan(reg, start, head)
    fast, fed_native = _scan(reg, start, head, path=_db(reg))
    assert fast == python
    assert fed_python == python[0] - start + 1 + (python[0] < head)
    return fast, fed_native


def test_a_clean_log_is_checked_natively_with_python_s_result(lite: Registry) -> None:
    _fill(lite, 2)
    fields, fed = _both(lite)
    assert fields[0] == 2 * auditscan.BLOCK + 321 and fields[3:5] == (None, None)
    assert fed == 1  # Python judged the first event; the native scan the rest
    fields, fed = _both(lite, start=auditscan.BLOCK + 1)  # a range of a worker: no prev
    assert fields[2] is not None and fed == 1


def test_a_file_the_native_scan_cannot_open_is_scanned_in_python(lite: Registry) -> None:
    _fill(lite, 1)
    head = auditscan.BLOCK + 321
    python, _ = _scan(lite, 1, head)
    fields, fed = _scan(lite, 1, head, path=str(lite.settings.home / "elsewhere" / "x.db"))
    assert fields == python and fields[0] == head and fed == head


def _update(reg: Registry, statement: str, *args: Any) -> None:
    conn = sqlite3.connect(_db(reg), isolation_level=None)
    try:
        conn.execute(statement, args)
    finally:
        conn.close()


def _clear_event_text(reg: Registry, seq: int, stored_after: str) -> None:
    """Give event *seq* a stored `after` spelled *stored_after*, hashed over its canonical
    form (as the walk hashes it): legitimate, but not the native scan's to accept."""
    conn = sqlite3.connect(_db(reg), isolation_level=None)
    conn.row_factory = sqlite3.Row
    try:
        row = conn.execute("SELECT * FROM mv_audit_events WHERE seq = ?", (seq,)).fetchone()
        assert row["scheme"] == 2
        digest = event_hash(
            seq=seq,
            ts=row["ts"],
            actor=row["actor"],
            action=row["action"],
            project=row["project"],
            model=row["model"],
            subject=row["subject"],
            before=json.loads(row["before"]) if row["before"] is not None else None,
            after=json.loads(stored_after),
            reason=row["reason"],
            prev_hash=row["prev_hash"],
            scheme=2,
            actor_commitment=row["actor_commitment"],
        )
        assert digest == row["hash"]  # the same value: the same hash, the chain unchanged
        conn.execute("UPDATE mv_audit_events SET after = ? WHERE seq = ?", (stored_after, seq))
    finally:
        conn.close()


TAMPERS: dict[str, tuple[str, tuple[Any, ...]]] = {
    "payload": ("UPDATE mv_audit_events SET after = '[2]' WHERE seq = ?", (6000,)),
    "link": ("UPDATE mv_audit_events SET prev_hash = hash WHERE seq = ?", (4097,)),
    "gap": ("DELETE FROM mv_audit_events WHERE seq = ?", (7000,)),
    "type": ("UPDATE mv_audit_events SET scheme = 'two' WHERE seq = ?", (5555,)),
    "tree leaf": (
        "UPDATE mv_audit_tree SET hash = ? WHERE level = 0 AND idx = ?",
        ("b" * 64, 6100),
    ),
    "tree leaf upper case": (
        "UPDATE mv_audit_tree SET hash = upper(hash) WHERE level = 0 AND idx = ?",
        (6200,),
    ),
    "clear actor": ("UPDATE mv_audit_personal SET actor = 'mallory' WHERE seq = ?", (6300,)),
    "salt": ("UPDATE mv_audit_personal SET salt = 'zz' WHERE seq = ?", (6301,)),
    "erased actor": ("DELETE FROM mv_audit_personal WHERE seq = ?", (6400,)),
    "invalid UTF-8": (
        "UPDATE mv_audit_events SET reason = CAST(x'ff' AS TEXT) WHERE seq = ?",
        (6500,),
    ),
}


@pytest.mark.parametrize("tamper", sorted(TAMPERS))
def test_a_tampered_log_gets_python_s_result(lite: Registry, tamper: str) -> None:
    _fill(lite, 2)
    statement, args = TAMPERS[tamper]
    _update(lite, statement, *args)
    if tamper == "invalid UTF-8":
        # the standard driver cannot read the row at all; the native scan stops before it
        # and leaves it to the driver, which fails the same way as without it
        with pytest.raises(sqlite3.OperationalError):
            _scan(lite, 1, 2 * auditscan.BLOCK + 321)
        with pytest.raises(sqlite3.OperationalError):
            _scan(lite, 1, 2 * auditscan.BLOCK + 321, path=_db(lite))
        return
    fields, _ = _both(lite)
    if tamper in {"payload", "link", "gap", "type"}:
        assert fields[0] == args[-1] - 1
    if tamper == "tree leaf upper case":  # the same hash, spelled in capitals: still good
        assert fields[4] is None
    elif tamper.startswith("tree leaf"):
        assert fields[4] == 6101


def test_an_event_only_the_walk_can_accept_is_judged_by_python_and_the_scan_goes_on(
    lite: Registry,
) -> None:
    _fill(lite, 2)
    # the same value in another spelling: its hash (over the canonical form) still holds
    conn = sqlite3.connect(_db(lite))
    after = conn.execute("SELECT after FROM mv_audit_events WHERE seq = 5000").fetchone()[0]
    conn.close()
    assert after is not None
    _clear_event_text(lite, 5000, json.dumps(json.loads(after), indent=1))
    fields, fed = _both(lite)
    assert fields[0] == 2 * auditscan.BLOCK + 321
    assert fed == 1 + auditscan.RESUME  # event 1, then event 5000 and the next ones


@pytest.mark.parametrize("count", [2, 64, auditscan.BLOCK])
def test_native_subtree_levels_are_the_rfc_s(count: int) -> None:
    leaves = [os.urandom(32) for _ in range(count)]
    assert native is not None
    levels = native.levels(b"".join(leaves))
    current = leaves
    for level in levels:
        current = [merkle.node_hash(a, b) for a, b in zip(current[::2], current[1::2], strict=True)]
        assert level == b"".join(current)
    assert len(current) == 1 and levels[-1] == current[0]
    with pytest.raises(ValueError, match="power of two"):
        native.levels(b"".join(leaves[:3]) if count > 2 else b"x" * 33)
