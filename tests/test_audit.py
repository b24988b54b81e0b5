"""The audit chain: one event per state change, and tampering detected by `verify`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from modelvault import InvalidInput, Registry

from .backends import raw_db
from .conftest import write_model


@pytest.fixture
def busy(reg: Registry, as_user: Callable[[str], Registry], tmp_path: Path) -> Registry:
    bob = as_user("bob")
    for i in range(1, 4):
        reg.register("fraud", write_model(tmp_path, f"v{i}", b"w%d" % i), capture_environment=False)
    reg.promote("fraud:1", "staging")
    bob.approve("fraud:1", comment="ok")
    reg.promote("fraud:1", "production", reason="launch")
    reg.set_alias("fraud", "champion", "1")
    reg.promote("fraud:2", "staging")
    bob.approve("fraud:2")
    reg.promote("fraud:2", "production", reason="better")
    reg.rollback("fraud", reason="regressed")
    return reg


def test_every_state_change_has_one_event(busy: Registry) -> None:
    actions = [e.action for e in busy.audit()]
    assert actions == [
        "project.create",
        "model.create",
        "version.register",
        "version.register",
        "version.register",
        "stage.promote",
        "version.approve",
        "stage.promote",
        "alias.set",
        "stage.promote",
        "version.approve",
        "stage.promote",
        "stage.rollback",
    ]
    events = busy.audit()
    assert [e.seq for e in events] == list(range(1, 14))
    assert all(events[i].prev_hash == events[i - 1].hash for i in range(1, len(events)))
    approve = busy.audit(actor="bob")
    assert [e.subject for e in approve] == ["default/fraud:1", "default/fraud:2"]
    assert busy.audit(action="stage.*", limit=2)[1].action == "stage.promote"
    result = busy.verify_audit()
    assert result.ok and result.events == 13 and result.first_bad_seq is None


def test_failed_changes_write_no_event(busy: Registry) -> None:
    before = len(busy.audit())
    with pytest.raises(Exception, match="cannot approve"):
        busy.approve("fraud:3")
    with pytest.raises(Exception, match="allowed"):
        busy.promote("fraud:3", "production", reason="x")
    assert len(busy.audit()) == before


def _expect_broken(reg: Registry, seq: int) -> None:
    result = reg.verify_audit()
    assert not result.ok
    assert result.first_bad_seq == seq, result.problem


def test_edited_event_is_detected(busy: Registry) -> None:
    with raw_db(busy) as db:
        db.execute(text("UPDATE mv_audit_events SET actor = 'mallory' WHERE seq = 7"))
    _expect_broken(busy, 7)


def test_edited_payload_is_detected(busy: Registry) -> None:
    with raw_db(busy) as db:
        db.execute(text("UPDATE mv_audit_events SET reason = 'routine' WHERE seq = 13"))
    _expect_broken(busy, 13)


def test_deleted_event_is_detected(busy: Registry) -> None:
    with raw_db(busy) as db:
        db.execute(text("DELETE FROM mv_audit_events WHERE seq = 5"))
    _expect_broken(busy, 5)


def test_inserted_event_is_detected(busy: Registry) -> None:
    with raw_db(busy) as db:
        # make room after event 6, shifting the rest, and slip in a forged approval
        db.execute(text("UPDATE mv_audit_events SET seq = -seq WHERE seq > 6"))
        db.execute(text("UPDATE mv_audit_events SET seq = -seq + 1 WHERE seq < 0"))
        prev = db.execute(text("SELECT hash FROM mv_audit_events WHERE seq = 6")).scalar()
        db.execute(
            text(
                "INSERT INTO mv_audit_events (seq, ts, actor, action, project, model, subject, "
                "before, after, reason, prev_hash, hash) VALUES (7, "
                "'2026-03-01T09:00:00.000100Z', 'carol', 'version.approve', 'default', 'fraud', "
                "'default/fraud:1', NULL, NULL, NULL, :prev, :hash)"
            ),
            {"prev": prev, "hash": "f" * 64},
        )
    _expect_broken(busy, 7)


def test_swapped_events_are_detected(busy: Registry) -> None:
    with raw_db(busy) as db:
        db.execute(text("UPDATE mv_audit_events SET seq = -1 WHERE seq = 8"))
        db.execute(text("UPDATE mv_audit_events SET seq = 8 WHERE seq = 9"))
        db.execute(text("UPDATE mv_audit_events SET seq = 9 WHERE seq = -1"))
    _expect_broken(busy, 8)


def test_truncated_tail_is_detected(busy: Registry) -> None:
    with raw_db(busy) as db:
        db.execute(text("DELETE FROM mv_audit_events WHERE seq >= 12"))
    _expect_broken(busy, 12)


def test_appended_forgery_with_wrong_link_is_detected(busy: Registry) -> None:
    with raw_db(busy) as db:
        db.execute(
            text(
                "INSERT INTO mv_audit_events (seq, ts, actor, action, project, model, subject, "
                "before, after, reason, prev_hash, hash) VALUES (14, "
                "'2026-03-02T00:00:00.000000Z', 'mallory', 'stage.promote', 'default', 'fraud', "
                "'default/fraud:3', NULL, NULL, NULL, :prev, :hash)"
            ),
            {"prev": "0" * 64, "hash": "e" * 64},
        )
    _expect_broken(busy, 14)


def test_audit_filters_refuse_nul(reg: Registry) -> None:
    # PostgreSQL cannot compare text holding NUL; both backends refuse it as bad input
    with pytest.raises(InvalidInput, match="NUL"):
        reg.audit(action="stage.\x00")
    with pytest.raises(InvalidInput):
        reg.audit(actor="al\x00ice")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("query", "index"),
    [
        ({"actor": "bob"}, "ix_audit_actor"),
        ({"action": "stage.promote"}, "ix_audit_action"),
        ({"model": "fraud"}, "ix_audit_model"),
        ({"since": "2026-03-01T00:00Z", "until": "2026-04-01T00:00Z"}, "ix_audit_ts"),
        ({"actor": "bob", "action": "version.approve"}, "ix_audit_actor"),
    ],
)
def test_audit_queries_use_their_index(busy: Registry, query: dict[str, str], index: str) -> None:
    """What keeps audit queries fast at 10 million events: each filter is answered from its
    index, never by scanning the log (SQLite's plan for the statement the service runs)."""
    from sqlalchemy import event

    seen: list[tuple[str, object]] = []
    engine = busy._ctx.store.engine

    def capture(conn: object, cursor: object, statement: str, params: object, *_: object) -> None:
        if "FROM mv_audit_events" in statement:
            seen.append((statement, params))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        assert busy.audit(**query)  # type: ignore[arg-type]
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    plans = []
    with engine.connect() as conn:
        for statement, params in seen:
            plans.append(
                " ".join(
                    str(row[-1])
                    for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params)  # type: ignore[arg-type]
                )
            )
    plan = " | ".join(plans)
    assert index in plan, plan
    for one in plans:
        assert "SCAN mv_audit_events" not in one.replace(f"USING INDEX {index}", ""), plan
    if "actor" in query:
        # events before pseudonymization by the clear name, later ones by their personal
        # rows: both read in sequence order from an (actor, seq) index, never all sorted
        assert "ix_audit_personal_actor (actor=? AND seq>?)" in plan, plan
        assert "TEMP B-TREE" not in plan, plan
