"""`audit`: append events in batches, sign a checkpoint (which fills in the Merkle tree),
verify the whole log (chain, tree, signatures, witness), and make and check inclusion proofs.

Events are appended with `audit.append_batch`, 1,000 per transaction (one insert, one head
move), so the figure is the log's own cost without any other state change. Then `explain` on a
model with two production releases, in that log."""

from __future__ import annotations

import random
import resource
import statistics
import time
from pathlib import Path

from bench.harness import Figures
from modelvault import Registry, Settings, merkle
from modelvault.audit import EventDraft, append_batch

FIGURES = {
    "append_per_s": ("/s", "high"),
    "checkpoint_s": ("s", "low"),
    "verify_s": ("s", "low"),
    "verify_per_s": ("/s", "high"),
    "verify_cpu_s": ("s", "low"),
    "proof_make_ms": ("ms", "low"),
    "proof_check_ms": ("ms", "low"),
    "explain_ms": ("ms", "low"),
}


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (verify's worker processes):
    what a shared machine distorts much less than wall time."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run(work: Path, quick: bool) -> Figures:
    total = 5_000 if quick else 1_000_000
    batch = 1_000
    home = work / f"audit-{time.monotonic_ns()}"
    settings = Settings.from_env(env={"MODELVAULT_CHECKPOINT_EVERY": "0"}, home=home, actor="b")
    reg = Registry(settings=settings)
    approver = Registry(settings=settings, actor="approver")
    ctx = reg._ctx  # the benchmark drives the service layer directly
    reg.init()
    draft = EventDraft(
        "version.register",
        "default/bench:1",
        project="default",
        model="bench",
        after={"version": 1, "digest": "sha256:" + "ab" * 32, "params": {"lr": 0.1}},
    )
    t0 = time.perf_counter()
    for _ in range(total // batch):
        with ctx.store.write() as conn:
            append_batch(conn, [draft] * batch, actor="bench", at=ctx.now())
    append_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    cp = reg.checkpoint()
    checkpoint_s = time.perf_counter() - t0
    assert cp is not None
    t0, cpu0 = time.perf_counter(), _cpu()
    result = reg.verify_audit()
    verify_s, verify_cpu_s = time.perf_counter() - t0, _cpu() - cpu0
    assert result.ok, result.problem
    size = cp["tree_size"]
    root = bytes.fromhex(cp["root"])
    make, check = [], []
    rng = random.Random(7)
    for _ in range(50 if quick else 500):
        seq = rng.randint(1, size)
        t0 = time.perf_counter()
        proof = reg.inclusion_proof(seq)
        make.append((time.perf_counter() - t0) * 1000)
        leaf = merkle.leaf_hash(bytes.fromhex(proof["event_hash"]))
        path = [bytes.fromhex(p) for p in proof["path"]]
        t0 = time.perf_counter()
        ok = merkle.verify_inclusion(leaf, seq - 1, size, path, root)
        check.append((time.perf_counter() - t0) * 1000)
        assert ok
    # an incident report on a model with a short history, in a log of `total` events
    files = home / "model"
    files.mkdir()
    for n in (1, 2):
        (files / "w.bin").write_bytes(b"weights %d" % n)
        reg.register("fraud", files, metrics={"auc": 0.8 + n / 100}, capture_environment=False)
        reg.promote(f"fraud:{n}", "staging")
        approver.approve(f"fraud:{n}", comment="ok")
        reg.promote(f"fraud:{n}", "production", reason="release")
    reg.explain("fraud@production")  # signs the checkpoint covering these facts
    explain = []
    for _ in range(5):
        t0 = time.perf_counter()
        reg.explain("fraud@production")
        explain.append((time.perf_counter() - t0) * 1000)
    approver.close()
    reg.close()
    return {
        "append_per_s": total / append_s,
        "checkpoint_s": checkpoint_s,
        "verify_s": verify_s,
        "verify_per_s": total / verify_s,
        "verify_cpu_s": verify_cpu_s,
        "proof_make_ms": statistics.median(make),
        "proof_check_ms": statistics.median(check),
        "explain_ms": statistics.median(explain),
    }
