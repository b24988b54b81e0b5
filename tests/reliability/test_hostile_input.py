"""Hostile input: each case is answered with one clear error, bounded work, nothing written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelvault import (
    IntegrityError,
    InvalidInput,
    ModelVaultError,
    NotFound,
    QuerySyntaxError,
    Registry,
)
from modelvault.blobs import MemoryBlobStore
from modelvault.canonical import canonical_json, sha256_digest
from modelvault.limits import LIMITS
from modelvault.refs import Ref, parse_ref
from modelvault.service.artifacts import pull, read_manifest

from ..backends import BACKENDS


@pytest.fixture
def backend() -> str:
    """Input is refused before it reaches the metadata store, so one backend is enough here;
    the case where the database itself could answer differently runs on every backend."""
    return "sqlite"


BAD_NAMES = [
    "",
    " ",
    "UPPER",
    "a/b",
    "a:b",
    "a@b",
    "../x",
    "x" * 65,
    "-x",
    "x-",
    "a b",
    "caf\u00e9",
    "nul\x00",
    "semi;colon",
    "drop table--",
    "\udce9",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_model_names(reg: Registry, model_dir: Path, name: str) -> None:
    with pytest.raises(InvalidInput, match="invalid model name"):
        reg.register(name, model_dir)
    reg.init()
    assert reg.models() == []


BAD_PATHS = ["", "a\x00b", "/nonexistent/" + "x" * 5000, "caf\udce9-missing", "/proc/nope/x"]


@pytest.mark.parametrize("path", BAD_PATHS)
def test_bad_registration_paths(reg: Registry, path: str) -> None:
    with pytest.raises(InvalidInput):
        reg.register("m", path)
    reg.init()
    assert reg.models() == []


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "m:",
        "m:0",
        "m:-1",
        "m:1:2",
        "m@",
        "m@@x",
        "a/b/c:1",
        "m:" + "9" * 20,
        "m:1.0",
        "m@Prod",
        "m\x00:1",
        "m:1 ",
        "x" * 3000,
    ],
)
def test_bad_references(reg: Registry, ref: str) -> None:
    with pytest.raises((InvalidInput, NotFound)):
        reg.get(ref)


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("c.json", '{"model": "m-2024-01-01", '),
        ("c.json", "[1, 2, 3]"),
        ("c.json", "{}"),
        ("c.yaml", "model: [unclosed"),
        ("c.yaml", "!!python/object/apply:os.system ['true']"),
        ("c.toml", "model = "),
        ("c.txt", "model = 1"),
        ("c.json", '{"model": "x", "nested": {"model_id": "gpt-latest"}}'),
    ],
)
def test_malformed_config_files(reg: Registry, tmp_path: Path, name: str, body: str) -> None:
    path = tmp_path / name
    path.write_text(body)
    with pytest.raises(InvalidInput) as info:
        reg.register("prompt", path, kind="config")
    assert "\n" not in info.value.message
    reg.init()
    assert reg.models() == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_nul_characters_in_filters_are_refused_on_every_backend(reg: Registry) -> None:
    # PostgreSQL cannot even compare text holding NUL; the answer must not depend on it
    reg.init()
    with pytest.raises(QuerySyntaxError, match="NUL"):
        reg.search('tags.team = "a\x00"')
    with pytest.raises(InvalidInput):
        reg.audit(actor="mallory\x00")
    with pytest.raises(InvalidInput):
        reg.audit(action="stage.\x00")


def test_oversized_values(reg: Registry, model_dir: Path) -> None:
    for kwargs in (
        {"params": {f"k{i}": i for i in range(LIMITS["keys_per_kind"] + 1)}},
        {"tags": {"t": "x" * (LIMITS["tag_value_chars"] + 1)}},
        {"description": "d" * 10_000_000},
        {"datasets": ["sha256:" + "0" * 64] * (LIMITS["datasets_per_version"] + 1)},
    ):
        with pytest.raises(InvalidInput):
            reg.register("m", model_dir, **kwargs)  # type: ignore[arg-type]
    reg.init()
    assert reg.models() == []


def _manifest(files: list[dict[str, Any]]) -> bytes:
    return canonical_json({"format": "modelvault.manifest/1", "files": files})


def test_manifest_that_lies_about_digests_or_sizes(reg: Registry, tmp_path: Path) -> None:
    blobs = reg._ctx.blobs
    real = blobs.put_bytes(b"real content")
    for entry in (
        {"path": "a.bin", "size": 12, "digest": sha256_digest(b"other content"), "mode": 420},
        {"path": "a.bin", "size": 999, "digest": real.digest, "mode": 420},
        {"path": "../escape", "size": 12, "digest": real.digest, "mode": 420},
    ):
        lying = blobs.put_bytes(_manifest([entry])).digest
        with pytest.raises((IntegrityError, NotFound)):
            pull(reg._ctx, lying, "forged", tmp_path / "out")
        assert not (tmp_path / "out" / "a.bin").exists()
        assert not (tmp_path / "escape").exists()


class CountingStore(MemoryBlobStore):
    reads = 0

    def read_bytes(self, digest: str, *, verify: bool = True) -> bytes:
        self.reads += 1
        return super().read_bytes(digest, verify=verify)


def test_manifest_bombs_are_refused_without_unbounded_work(reg: Registry) -> None:
    store = CountingStore()
    ctx = reg._ctx
    ctx.blobs = store
    # larger than any valid manifest: refused from its size alone, never read
    huge = store.put_bytes(b" " * (LIMITS["manifest_bytes"] + 1)).digest
    with pytest.raises(IntegrityError, match="more than any valid manifest"):
        read_manifest(ctx, huge)
    assert store.reads == 0
    # millions of entries would not fit; one more than the file limit is refused on count
    entry = {"size": 0, "digest": sha256_digest(b""), "mode": 420}
    many = [{"path": f"f{i:07d}", **entry} for i in range(LIMITS["files_per_version"] + 1)]
    bomb = store.put_bytes(_manifest(many)).digest
    with pytest.raises(IntegrityError, match="more than"):
        read_manifest(ctx, bomb)


names = st.from_regex(r"[a-z0-9](?:[a-z0-9._-]{0,10}[a-z0-9])?", fullmatch=True)
aliases = st.from_regex(r"[a-z][a-z0-9_-]{0,10}", fullmatch=True).filter(
    lambda a: a not in {"development", "staging", "production", "archived", "retired", "latest"}
)


@st.composite
def refs(draw: st.DrawFn) -> Ref:
    project = draw(st.one_of(st.none(), names))
    model = draw(names)
    choice = draw(st.sampled_from(["number", "label", "alias", "stage", "latest"]))
    if choice == "number":
        return Ref(project, model, number=draw(st.integers(1, 10**9)))
    if choice == "label":
        a, b, c = draw(st.tuples(*(st.integers(0, 99),) * 3))
        return Ref(project, model, label=f"{a}.{b}.{c}")
    if choice == "alias":
        return Ref(project, model, alias=draw(aliases))
    if choice == "stage":
        return Ref(project, model, stage=draw(st.sampled_from(["staging", "production"])))
    return Ref(project, model)


@settings(max_examples=300, deadline=None)
@given(refs())
def test_references_round_trip(ref: Ref) -> None:
    assert parse_ref(str(ref)) == ref


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_references_only_raise_invalid_input(text: str) -> None:
    try:
        parse_ref(text)
    except InvalidInput:
        pass
    except ModelVaultError as exc:  # pragma: no cover - would be a defect
        pytest.fail(f"unexpected {type(exc).__name__}")
