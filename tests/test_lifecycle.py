"""Stages, approvals, rollback, aliases and history as data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from modelvault import (
    AlreadyExists,
    Conflict,
    Forbidden,
    GateFailed,
    InvalidInput,
    NotFound,
    Registry,
)

from .conftest import FakeClock, write_model

pytestmark = pytest.mark.contract


@pytest.fixture
def three(reg: Registry, tmp_path: Path) -> Registry:
    for i in range(1, 4):
        reg.register(
            "fraud", write_model(tmp_path, f"v{i}", b"weights %d" % i), capture_environment=False
        )
    return reg


def ship(reg: Registry, bob: Registry, ref: str) -> None:
    """Staging, an approval by someone else, then production."""
    reg.promote(ref, "staging")
    bob.approve(ref, comment="looks good")
    reg.promote(ref, "production", reason=f"ship {ref}")


def test_no_skipping_staging_and_retired_is_final(three: Registry) -> None:
    with pytest.raises(Conflict, match="promote it to staging first"):
        three.promote("fraud:1", "production", reason="x")
    three.promote("fraud:1", "retired")
    with pytest.raises(Conflict, match=r"allowed: nothing \(final\)"):
        three.promote("fraud:1", "staging")
    with pytest.raises(InvalidInput, match="unknown stage 'prod'"):
        three.promote("fraud:2", "prod")


def test_production_needs_reason_and_approval_by_someone_else(
    three: Registry, as_user: Callable[[str], Registry]
) -> None:
    bob = as_user("bob")
    three.promote("fraud:1", "staging")
    with pytest.raises(InvalidInput, match="reason is required"):
        three.promote("fraud:1", "production")
    with pytest.raises(GateFailed, match=r"approvals >= 1 \(actual 0\)"):
        three.promote("fraud:1", "production", reason="go")
    with pytest.raises(Forbidden, match="cannot approve it"):
        three.approve("fraud:1")
    bob.approve("fraud:1", comment="ok")
    with pytest.raises(AlreadyExists):
        bob.approve("fraud:1")
    done = three.promote("fraud:1", "production", reason="go")
    assert (done.from_stage, done.to_stage, done.replaced) == ("staging", "production", None)
    assert three.get("fraud@production").number == 1
    assert [a.approver for a in three.approvals("fraud:1")] == ["bob"]


def test_policy_file_sets_approvals_per_project(
    three: Registry, as_user: Callable[[str], Registry]
) -> None:
    three.settings.policy.parent.mkdir(parents=True, exist_ok=True)
    three.settings.policy.write_text("[defaults]\napprovals = 2\n[projects.other]\napprovals = 0\n")
    three.promote("fraud:1", "staging")
    as_user("bob").approve("fraud:1")
    with pytest.raises(GateFailed, match=r"approvals >= 2 \(actual 1"):
        three.promote("fraud:1", "production", reason="go")
    as_user("carol").approve("fraud:1")
    assert three.promote("fraud:1", "production", reason="go").to_stage == "production"


def test_policy_file_errors_name_the_problem(three: Registry) -> None:
    three.settings.policy.parent.mkdir(parents=True, exist_ok=True)
    three.settings.policy.write_text("[defaults]\napprovals = \n")
    # a broken policy blocks every gated move, staging included: nothing passes unchecked
    with pytest.raises(InvalidInput, match="line 2"):
        three.promote("fraud:1", "staging")
    assert three.get("fraud:1").stage == "development"


def test_one_production_version_and_previous_archived(
    three: Registry, as_user: Callable[[str], Registry]
) -> None:
    bob = as_user("bob")
    ship(three, bob, "fraud:1")
    ship(three, bob, "fraud:2")
    assert three.get("fraud@production").number == 2
    assert three.get("fraud:1").stage == "archived"
    assert [m.production_version for m in three.models()] == [2]


def test_rollback_walks_back_through_production_history(
    three: Registry, as_user: Callable[[str], Registry]
) -> None:
    bob = as_user("bob")
    for n in (1, 2, 3):
        ship(three, bob, f"fraud:{n}")
    with pytest.raises(InvalidInput, match="reason is required"):
        three.rollback("fraud", reason="")
    back = three.rollback("fraud", reason="v3 regressed")
    assert (back.version, back.replaced) == (2, 3)
    assert three.get("fraud@production").number == 2
    assert three.get("fraud:3").stage == "archived"
    assert three.rollback("fraud", reason="v2 too").version == 1
    with pytest.raises(Conflict, match="no previous production version"):
        three.rollback("fraud", reason="again")
    event = three.audit(action="stage.rollback", newest_first=True, limit=1)[0]
    assert event.before == {"production": 2}
    assert event.after is not None and event.after["production"] == 1
    assert event.reason == "v2 too"


def test_rollback_to_a_chosen_version(three: Registry, as_user: Callable[[str], Registry]) -> None:
    bob = as_user("bob")
    for n in (1, 2, 3):
        ship(three, bob, f"fraud:{n}")
    assert three.rollback("fraud", reason="jump", to=1).version == 1
    with pytest.raises(Conflict, match="is in production now"):
        three.rollback("fraud", reason="x", to=1)
    with pytest.raises(Conflict, match="was rolled back before"):
        three.rollback("fraud", reason="x", to=3)


def test_rollback_without_history_fails_cleanly(three: Registry) -> None:
    with pytest.raises(Conflict, match="no previous production version"):
        three.rollback("fraud", reason="oops")
    with pytest.raises(NotFound):
        three.rollback("nope", reason="oops")
    assert [e.action for e in three.audit()].count("stage.rollback") == 0


def test_show_at_answers_who_held_production_then(
    three: Registry, as_user: Callable[[str], Registry], clock: FakeClock
) -> None:
    bob = as_user("bob")
    ship(three, bob, "fraud:1")
    t1 = clock.advance(days=1)
    clock.advance(days=1)
    ship(three, bob, "fraud:2")
    t2 = clock.advance(days=1)
    assert three.get("fraud@production", at=t1).number == 1
    assert three.get("fraud@production", at=t1).stage == "production"
    assert three.get("fraud:2", at=t1).stage == "development"
    assert three.get("fraud@production", at=t2).number == 2
    assert three.get("fraud:1", at=t2).stage == "archived"
    with pytest.raises(NotFound, match="at 2026-02"):
        three.get("fraud@production", at="2026-02-01T00:00Z")
    history = three.stage_history("fraud")
    prod = [(h.version, h.end_reason) for h in history if h.stage == "production"]
    assert prod == [(1, "replaced"), (2, None)]


def test_alias_compare_and_set_with_history(three: Registry, clock: FakeClock) -> None:
    three.set_alias("fraud", "champion", "1", expect="none")
    with pytest.raises(Conflict, match="is version 1, not unset"):
        three.set_alias("fraud", "champion", "2", expect="none")
    with pytest.raises(Conflict, match="is version 1, not version 3"):
        three.set_alias("fraud", "champion", "2", expect=3)
    t = clock.advance(hours=1)
    three.set_alias("fraud", "champion", "fraud:2", expect=1)
    assert three.get("fraud@champion").number == 2
    assert three.get("fraud@champion", at=t).number == 1
    three.remove_alias("fraud", "champion", expect=2)
    with pytest.raises(NotFound):
        three.get("fraud@champion")
    hist = three.alias_history("fraud", "champion")
    assert [(h.version, h.valid_to is not None) for h in hist] == [(1, True), (2, True)]
    with pytest.raises(InvalidInput, match="reserved"):
        three.set_alias("fraud", "production", "1")
    with pytest.raises(Conflict, match="only point at versions of fraud"):
        three.set_alias("fraud", "champion", "other:1")


def test_setting_an_alias_to_where_it_is_changes_nothing(three: Registry) -> None:
    three.set_alias("fraud", "champion", "1")
    events = len(three.audit())
    three.set_alias("fraud", "champion", "1")
    assert len(three.audit()) == events
