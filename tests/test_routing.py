"""The routing math: bucketing test vectors (as documented), split accuracy, stickiness, and
that raising a canary's weight never moves one of its users back (property tests)."""

from __future__ import annotations

import re
from pathlib import Path

import mmh3
from hypothesis import given, settings
from hypothesis import strategies as st

from modelvault.deploy.records import Arm, DeploymentSpec, Release, Segment, Shadow
from modelvault.deploy.routing import Router, arm_of, bucket

DOC = Path(__file__).parent.parent / "docs" / "rollout.md"
STABLE, CANARY, BETA = Release("m", 1), Release("m", 2), Release("m", 3)
salts = st.text(alphabet="0123456789abcdef", min_size=16, max_size=16)


def _spec(canary: float, **kw: object) -> DeploymentSpec:
    return DeploymentSpec(
        arms=(Arm(CANARY, canary), Arm(STABLE, 100 - canary)), sticky="header:x-user", **kw
    )  # type: ignore[arg-type]


def test_documented_test_vectors_hold() -> None:
    rows = re.findall(r"^\| `([^`]*)` \| `([^`]*)` \| (\d+) \| (\d+) \|$", DOC.read_text(), re.M)
    assert len(rows) >= 5
    for salt, key, h, b in rows:
        assert mmh3.hash(f"{salt}:{key}".encode(), 0, signed=False) == int(h)
        assert bucket(salt, key) == int(b), (salt, key)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(salt=salts)
def test_ninety_ten_over_twenty_thousand_keys_is_within_one_point(salt: str) -> None:
    spec = _spec(10)
    canary = sum(arm_of(spec, salt, f"user-{i}") == CANARY for i in range(20_000))
    assert abs(canary / 20_000 - 0.10) <= 0.01


@settings(max_examples=50, deadline=None, derandomize=True)
@given(salt=salts, keys=st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=200))
def test_raising_the_canary_moves_no_canary_user_back(salt: str, keys: list[str]) -> None:
    small, large = _spec(10), _spec(25)
    for key in keys:
        if arm_of(small, salt, key) == CANARY:
            assert arm_of(large, salt, key) == CANARY


@settings(max_examples=50, deadline=None, derandomize=True)
@given(salt=salts, key=st.text(min_size=1, max_size=60), weight=st.integers(0, 100))
def test_the_same_key_always_lands_on_the_same_arm(salt: str, key: str, weight: int) -> None:
    spec = _spec(weight)
    healthy = spec.releases()
    first = Router(spec, salt, healthy).choose({"x-user": key}, {}, "r1")
    again = Router(spec, salt, healthy).choose({"x-user": key}, {}, "r2")
    assert first is not None and again is not None
    assert first.release == again.release == arm_of(spec, salt, key)


def test_segments_then_features_then_arms_and_preview() -> None:
    spec = _spec(
        0,
        segments=(Segment({"header:x-tier": "beta", "json:country": "FR"}, BETA, "beta"),),
        preview=CANARY,
    )
    router = Router(spec, "s", spec.releases())
    beta = router.choose({"x-tier": "beta"}, {"country": "FR"}, "r")
    assert beta is not None and (beta.release, beta.rule) == (BETA, "segment:beta")
    other = router.choose({"x-tier": "beta"}, {"country": "DE"}, "r")
    assert other is not None and other.release == STABLE
    preview = router.choose({"x-model-preview": "1"}, {}, "r")
    assert preview is not None and (preview.release, preview.rule) == (CANARY, "preview")


def test_an_unhealthy_release_is_never_chosen() -> None:
    spec = _spec(50)
    router = Router(spec, "s", [STABLE])  # the canary failed to load
    for i in range(2000):
        choice = router.choose({"x-user": f"u{i}"}, {}, "r")
        assert choice is not None and choice.release == STABLE
    assert Router(spec, "s", []).choose({"x-user": "u"}, {}, "r") is None


def test_shadow_sampling_rate_and_independence_from_the_arm() -> None:
    spec = _spec(50, shadows=(Shadow(BETA, 0.2),))
    router = Router(spec, "salt", spec.releases())
    sampled = {CANARY: 0, STABLE: 0}
    arms = {CANARY: 0, STABLE: 0}
    for i in range(20_000):
        choice = router.choose({"x-user": f"user-{i}"}, {}, "r")
        assert choice is not None
        arms[choice.release] += 1
        sampled[choice.release] += choice.shadows == (BETA,)
    for release in (CANARY, STABLE):
        assert abs(sampled[release] / arms[release] - 0.2) < 0.02
