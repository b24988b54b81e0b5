"""The deployment control plane: environments, deploy (all at once, canary, shadow, preview,
YAML spec), status now and at a past time, rollouts, rollback, and bad input leaving no
trace."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from modelvault import Conflict, GateFailed, InvalidInput, NotFound, Registry
from modelvault.errors import AlreadyExists, Forbidden

from .conftest import FakeClock
from .deploy_helpers import python_dir, register_model, to_production

Opener = Callable[[str], Registry]


@pytest.fixture
def live(reg: Registry, as_user: Opener, tmp_path: Path) -> Registry:
    """fraud:1 serving production (and the registry's production stage), fraud:2 staged and
    approved, fraud:3 in development."""
    bob = as_user("bob")
    for c in (1.0, 0.5, 0.1):
        register_model(reg, tmp_path, "fraud", c)
    to_production(reg, bob, "fraud:1")
    to_production(reg, bob, "fraud:2")
    reg.deploy_release("fraud:1", "production", reason="first launch")
    return reg


def _events(reg: Registry) -> int:
    return len(reg.audit(limit=None))


def test_a_first_deploy_serves_everything_and_takes_the_production_stage(live: Registry) -> None:
    dep = live.deployment("fraud", "production")
    assert [(a.release.key, a.weight) for a in dep.spec.arms] == [("fraud:1", 100.0)]
    assert live.get("fraud@production").number == 1
    event = live.audit(action="deployment.apply")[-1]
    assert event.subject == "default/production/fraud"
    assert event.after is not None and event.after["arms"] == {"fraud:1": 100.0}


def test_canary_steps_advance_promote_and_leave_a_standby(live: Registry) -> None:
    dep = live.deploy_release("fraud:2", "production", canary="1,5,25,50,100", bake="10m")
    assert [(a.release.key, a.weight) for a in dep.spec.arms] == [
        ("fraud:2", 1.0),
        ("fraud:1", 99.0),
    ]
    assert dep.spec.guardrails[0].rule == "error_rate > 2x baseline"
    assert live.get("fraud@production").number == 1  # not yet
    dep = live.rollout("advance", "fraud", "production")
    assert dep.spec.arms[0].weight == 5.0
    dep = live.rollout("promote", "fraud", "production", reason="looks good")
    assert [(a.release.key, a.weight) for a in dep.spec.arms] == [("fraud:2", 100.0)]
    assert dep.spec.rollout is not None and dep.spec.rollout.status == "complete"
    assert dep.spec.standby is not None and dep.spec.standby.release.key == "fraud:1"
    assert live.get("fraud@production").number == 2


def test_pause_resume_abort(live: Registry) -> None:
    live.deploy_release("fraud:2", "production", canary="10,100")
    paused = live.rollout("pause", "fraud", "production")
    assert paused.spec.rollout is not None and paused.spec.rollout.status == "paused"
    with pytest.raises(Conflict, match="paused"):
        live.rollout("advance", "fraud", "production")
    live.rollout("resume", "fraud", "production")
    with pytest.raises(InvalidInput, match="reason"):
        live.rollout("abort", "fraud", "production")
    done = live.rollout("abort", "fraud", "production", reason="bad")
    assert [(a.release.key, a.weight) for a in done.spec.arms] == [("fraud:1", 100.0)]
    assert live.get("fraud@production").number == 1


def test_status_answers_for_any_past_time(live: Registry, clock: FakeClock) -> None:
    clock.advance(hours=1)
    before = clock.now
    clock.advance(hours=1)
    live.deploy_release("fraud:2", "production", canary="25,100")
    now = live.status(environment="production")
    assert [(a.release.key, a.weight) for a in now[0].spec.arms] == [
        ("fraud:2", 25.0),
        ("fraud:1", 75.0),
    ]
    then = live.status(environment="production", at=before)
    assert [(a.release.key, a.weight) for a in then[0].spec.arms] == [("fraud:1", 100.0)]
    assert live.status(environment="staging") == []
    assert [d.revision for d in live.deployment_history("fraud", "production")] == [1, 2]


def test_rollback_with_env_restores_the_previous_release_and_stage(live: Registry) -> None:
    live.deploy_release("fraud:2", "production", reason="v2")
    assert live.get("fraud@production").number == 2
    dep = live.rollback_deployment("fraud", "production", reason="false positives")
    assert [(a.release.key, a.weight) for a in dep.spec.arms] == [("fraud:1", 100.0)]
    assert live.get("fraud@production").number == 1
    event = live.audit(action="deployment.rollback")[-1]
    assert event.after is not None and event.after["restored"] == "fraud:1"
    assert event.reason == "false positives"
    assert live.audit(action="stage.rollback")[-1].seq == event.seq - 1


def test_rollback_during_a_rollout_aborts_it(live: Registry) -> None:
    live.deploy_release("fraud:2", "production", canary="5,100")
    dep = live.rollback_deployment("fraud", "production", reason="pager")
    assert dep.spec.rollout is not None and dep.spec.rollout.status == "aborted"
    assert [(a.release.key, a.weight) for a in dep.spec.arms] == [("fraud:1", 100.0)]


def test_feature_rollback_reverts_only_that_route(live: Registry) -> None:
    live.deploy(
        "fraud",
        "production",
        {"release": "fraud:1", "features": {"checkout": "fraud:1", "search": "fraud:1"}},
    )
    live.deploy(
        "fraud",
        "production",
        {"release": "fraud:1", "features": {"checkout": "fraud:2", "search": "fraud:2"}},
    )
    dep = live.rollback_deployment(
        "fraud", "production", reason="checkout broke", feature="checkout"
    )
    routes = {f.feature: f.release.key for f in dep.spec.features}
    assert routes == {"checkout": "fraud:1", "search": "fraud:2"}
    with pytest.raises(NotFound, match="feature 'nope'"):
        live.rollback_deployment("fraud", "production", reason="x", feature="nope")


def test_yaml_spec_with_segments_shadows_and_sticky(live: Registry, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "model: fraud\nenvironment: production\n"
        "arms:\n  - {release: 'fraud:2', weight: 10}\n  - {release: 'fraud:1', weight: 90}\n"
        "sticky: header:X-User-Id\n"
        "segments:\n  - {name: beta, match: {'header:x-tier': beta}, release: 'fraud:2'}\n"
        "shadows:\n  - {release: 'fraud:3', sample: 0.2}\n"
    )
    dep = live.deploy_file(spec)
    assert dep.spec.sticky == "header:x-user-id"
    assert dep.spec.segments[0].match == {"header:x-tier": "beta"}
    assert [(s.release.key, s.sample) for s in dep.spec.shadows] == [("fraud:3", 0.2)]


def test_environments_are_per_project_and_addable(reg: Registry, tmp_path: Path) -> None:
    assert [e.name for e in reg.environments()] == ["development", "staging", "production"]
    reg.add_environment("eu-canary")
    assert "eu-canary" in [e.name for e in reg.environments()]
    with pytest.raises(AlreadyExists):
        reg.add_environment("eu-canary")
    register_model(reg, tmp_path, "m", 1.0)
    with pytest.raises(NotFound, match="environment 'qa'"):
        reg.deploy_release("m:1", "qa")
    assert reg.deploy_release("m:1", "eu-canary").environment == "eu-canary"


def test_deployment_roots_name_every_blob_a_release_needs(live: Registry) -> None:
    live.deploy_release("fraud:2", "production", canary="5,100")
    roots = live.deployment_roots()
    for ref in ("fraud:1", "fraud:2"):
        v = live.get(ref)
        assert v.artifact_digest in roots
        for entry in live.manifest(ref).files:
            assert entry.digest in roots
    assert live.get("fraud:3").artifact_digest not in roots


# -- bad input: a clear error, and nothing written --------------------------------------


@pytest.mark.parametrize(
    ("doc", "error", "match"),
    [
        (
            {"arms": [{"release": "fraud:2", "weight": 10}, {"release": "fraud:1", "weight": 80}]},
            InvalidInput,
            "sum to 100, not 10 \\+ 80 = 90",
        ),
        ({"release": "fraud:9"}, NotFound, "unknown release fraud:9"),
        ({"release": "fraud:3"}, Conflict, "in development"),
        ({"arms": [{"release": "fraud:1", "weight": 100.0001}]}, InvalidInput, "outside 0-100"),
        ({"release": "fraud:1", "sticky": "cookie:x"}, InvalidInput, "header:NAME"),
        (
            {"release": "fraud:1", "shadows": [{"release": "fraud:2", "sample": 0}]},
            InvalidInput,
            "sample",
        ),
        ({"rollout": {"release": "fraud:2", "steps": [5, 1, 100]}}, InvalidInput, "rise"),
        ({"release": "fraud:1", "guardrails": ["errors > 2"]}, InvalidInput, "unknown metric"),
        ({"release": "fraud:1", "colour": "red"}, InvalidInput, "unknown key 'colour'"),
    ],
)
def test_bad_specs_are_refused_and_leave_no_trace(
    live: Registry, doc: dict[str, object], error: type[Exception], match: str
) -> None:
    events = _events(live)
    with pytest.raises(error, match=match):
        live.deploy("fraud", "production", doc)
    assert _events(live) == events
    assert live.deployment("fraud", "production").revision == 1


def test_a_retired_version_cannot_be_deployed(live: Registry) -> None:
    live.promote("fraud:3", "retired")
    with pytest.raises(Conflict, match="retired"):
        live.deploy_release("fraud:3", "staging")


def test_failing_gates_refuse_production_traffic(
    live: Registry, as_user: Opener, tmp_path: Path
) -> None:
    register_model(live, tmp_path, "fraud", 0.05)
    live.promote("fraud:4", "staging")  # staged but nobody approved it
    with pytest.raises(GateFailed, match="approvals"):
        live.deploy_release("fraud:4", "production", canary="1,100")
    with pytest.raises(GateFailed):
        live.deploy("fraud", "production", {"release": "fraud:1", "features": {"x": "fraud:4"}})
    # other environments have no registry gate; shadows serve nobody
    assert live.deploy_release("fraud:4", "staging").revision == 1
    live.deploy_release("fraud:1", "production", shadow="fraud:4", sample=0.5)


def test_a_flavor_that_cannot_load_is_refused_before_traffic_moves(
    live: Registry, tmp_path: Path
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.skops").write_bytes(b"not a zip file")
    live.register("broken", bad, capture_code=False, capture_environment=False)
    code = python_dir(tmp_path, "code", "def predict(rows):\n    return [0 for _ in rows]\n")
    live.register("custom", code, flavor="python", capture_code=False, capture_environment=False)
    events = _events(live)
    with pytest.raises(InvalidInput, match="refused before any traffic moved"):
        live.deploy_release("broken:1", "staging")
    with pytest.raises(Forbidden, match="trusted_code"):
        live.deploy_release("custom:1", "staging")
    assert _events(live) == events
    assert live.status(environment="staging") == []


def test_automatic_actor_cannot_skip_the_human_gate(live: Registry, as_user: Opener) -> None:
    """The controller may advance steps, but completing a production rollout promotes the
    candidate through the registry's gate as it stands then, with no override."""
    bot = as_user("modelvault-controller")
    live.deploy_release("fraud:2", "production", canary="25,50,100")
    assert bot.rollout("advance", "fraud", "production").spec.arms[0].weight == 50.0
    live.settings.policy.parent.mkdir(parents=True, exist_ok=True)
    live.settings.policy.write_text("[defaults]\napprovals = 2\n")  # now two people must
    with pytest.raises(GateFailed, match="approvals"):
        bot.rollout("advance", "fraud", "production")
    dep = live.deployment("fraud", "production")
    assert dep.spec.arms[0].weight == 50.0 and live.get("fraud@production").number == 1
    as_user("carol").approve("fraud:2")
    done = bot.rollout("advance", "fraud", "production")
    assert done.spec.rollout is not None and done.spec.rollout.status == "complete"
    assert live.get("fraud@production").number == 2
    assert live.audit(action="stage.promote")[-1].actor == "modelvault-controller"


def test_sample_without_shadow_is_refused(live: Registry) -> None:
    with pytest.raises(InvalidInput, match="--sample needs --shadow"):
        live.deploy_release("fraud:1", "staging", sample=0.5)


def test_rollback_without_a_previous_release(live: Registry) -> None:
    with pytest.raises(Conflict, match="no previous release"):
        live.rollback_deployment("fraud", "production", reason="x")
