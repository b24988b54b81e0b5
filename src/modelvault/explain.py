"""`modelvault explain MODEL@production [--env E] [--at TIME]`: one incident report.

Which version served (and the traffic split, when a deployment exists), since when and who put
it there, who approved it, the gates it passed with their numbers, what it was trained on and
with, how it differs from the production version before it, the rollbacks and rollout
decisions around that time, and for every fact the audit event it rests on with an inclusion
proof against a signed checkpoint. Built from the registry's own queries; read-only except
that a checkpoint is signed when none covers the facts yet.
"""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .errors import InvalidInput, NotFound
from .timeutil import to_text

if TYPE_CHECKING:
    from .domain import AuditEvent
    from .registry import Registry

WINDOW = timedelta(days=7)  # rollbacks and rollout decisions this close to --at are reported
AROUND = ("stage.rollback", "deployment.rollback", "rollout.abort", "rollout.advance",
          "rollout.promote", "rollout.pause", "deployment.apply", "gate.override")  # fmt: skip


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    if isinstance(value, datetime):
        return to_text(value)
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _fact(event: AuditEvent | None) -> dict[str, Any] | None:
    if event is None:
        return None
    return {"seq": event.seq, "action": event.action, "actor": event.actor, "ts": to_text(event.ts)}


def explain(
    reg: Registry, ref: str, *, env: str | None = None, at: datetime | None = None
) -> dict[str, Any]:
    """The report as plain data (see ``render`` for text, markdown and HTML)."""
    when = at or reg._ctx.now()
    if "@" not in ref and ":" not in ref:
        ref = f"{ref}@production"
    version = reg.get(ref, at=when)
    model, number = version.model, version.number
    subject = f"{version.project}/{model}:{number}"
    events = reg.audit(model=f"{version.project}/{model}", limit=None)
    mine = [e for e in events if e.subject == subject]

    def last(action: str, pred: Any = None) -> AuditEvent | None:
        found = [
            e for e in mine if e.action == action and e.ts <= when and (pred is None or pred(e))
        ]
        return found[-1] if found else None

    registered = last("version.register")
    promoted = last("stage.promote", lambda e: (e.after or {}).get("stage") == "production")
    intervals = [
        i for i in reg.stage_history(f"{version.project}/{model}") if i.stage == "production"
    ]
    serving = next(
        (
            i
            for i in intervals
            if i.version == number
            and i.valid_from <= when
            and (i.valid_to is None or i.valid_to > when)
        ),
        None,
    )
    earlier = [i for i in intervals if i.valid_from < (serving.valid_from if serving else when)]
    earlier = [i for i in earlier if i.version != number]
    previous = earlier[-1].version if earlier else None
    restored = None
    if serving is not None:
        restored_by = [
            e
            for e in events
            if e.action == "stage.rollback"
            and abs((e.ts - serving.valid_from).total_seconds()) < 1e-3
        ]
        restored = restored_by[-1] if restored_by else None
    approvals = [
        a for a in reg.approvals(f"{version.project}/{model}:{number}") if a.created_at <= when
    ]
    approval_events = [
        last("version.approve", lambda e, a=a: e.actor == a.approver) for a in approvals
    ]
    gates = (promoted.after or {}).get("gates") if promoted and promoted.after else None
    around = [e for e in events if e.action in AROUND and when - WINDOW <= e.ts <= when + WINDOW]
    deployment = None
    if env is not None:
        found = [d for d in reg.status(environment=env, at=when) if d.model == model]
        if found:
            d = found[0]
            deployment = {
                "environment": env,
                "revision": d.revision,
                "since": to_text(d.valid_from),
                "by": d.set_by,
                "reason": d.reason,
                "arms": [{"release": a.release.key, "weight": a.weight} for a in d.spec.arms],
                "audit": {"seq": d.audit_seq},
            }
    diff = None
    if previous is not None:
        changes = reg.diff(
            f"{version.project}/{model}:{previous}", f"{version.project}/{model}:{number}"
        )
        diff = {"against": previous, **_plain(changes)}
    report: dict[str, Any] = {
        "query": {"ref": ref, "env": env, "at": to_text(when)},
        "version": {
            "ref": f"{version.project}/{model}:{number}",
            "digest": version.digest,
            "artifact_digest": version.artifact_digest,
            "stage_now": reg.get(f"{version.project}/{model}:{number}").stage,
            "created_by": version.created_by,
            "created_at": to_text(version.created_at),
            "audit": _fact(registered),
        },
        "serving": {
            "since": to_text(serving.valid_from) if serving else None,
            "until": to_text(serving.valid_to) if serving and serving.valid_to else None,
            "by": serving.set_by if serving else None,
            "reason": serving.reason if serving else None,
            "how": "rollback" if restored else "promotion",
            "audit": _fact(restored or promoted),
        },
        "deployment": deployment,
        "approvals": [
            {
                "approver": a.approver,
                "at": to_text(a.created_at),
                "comment": a.comment,
                "audit": _fact(e),
            }
            for a, e in zip(approvals, approval_events, strict=True)
        ],
        "gates": {
            "checks": gates,
            "eval_set": (promoted.after or {}).get("eval_set") if promoted else None,
            "audit": _fact(promoted),
        },
        "record": {
            "params": _plain(version.params),
            "metrics": _plain(version.metrics),
            "datasets": _plain(version.datasets),
            "code": _plain(version.code),
            "environment": _plain(version.environment),
        },
        "previous_production": previous,
        "diff": diff,
        "around": [
            {
                "seq": e.seq,
                "action": e.action,
                "actor": e.actor,
                "ts": to_text(e.ts),
                "subject": e.subject,
                "reason": e.reason,
                "after": _plain(e.after),
            }
            for e in around
        ],
    }
    report["proofs"] = _proofs(reg, report)
    return report


def _seqs(report: dict[str, Any]) -> list[int]:
    found: set[int] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("seq"), int) and "action" in value:
                found.add(value["seq"])
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(report)
    if report.get("deployment"):
        found.add(report["deployment"]["audit"]["seq"])
    return sorted(found)


def _proofs(reg: Registry, report: dict[str, Any]) -> dict[str, Any]:
    seqs = _seqs(report)
    if not seqs:
        return {"checkpoint": None, "events": {}}
    try:
        proof = reg.inclusion_proof(seqs[-1])
    except NotFound:
        reg.checkpoint()  # sign one now so that every fact can be proven
        proof = reg.inclusion_proof(seqs[-1])
    size = proof["tree_size"]
    out = {}
    for seq in seqs:
        p = reg.inclusion_proof(seq, tree_size=size)
        out[str(seq)] = {"event_hash": p["event_hash"], "path": p["path"]}
    return {"checkpoint": proof["checkpoint"], "events": out}


# -- rendering --------------------------------------------------------------------------------


def _lines(r: dict[str, Any]) -> list[tuple[str, str]]:
    """(heading, body) sections shared by text, markdown and HTML."""
    v, s = r["version"], r["serving"]
    out: list[tuple[str, str]] = []
    serving = s["since"] is not None
    head = (
        f"{v['ref']} {'was serving' if serving else 'was not in production'} at {r['query']['at']}"
    )
    if r["query"]["env"]:
        head += f" in {r['query']['env']}"
    body = [
        "not serving production traffic at that time"
        if not serving
        else f"since {s['since']} ({s['how']} by {s['by']}"
        + (f": {s['reason']}" if s["reason"] else "")
        + ")"
        + (f", until {s['until']}" if s["until"] else ", still serving")
        + _cite(s["audit"]),
        f"version digest {v['digest']}, artifact {v['artifact_digest']}",
        f"stage now: {v['stage_now']}",
        f"registered by {v['created_by']} at {v['created_at']}{_cite(v['audit'])}",
    ]
    out.append((head, "\n".join(body)))
    if r["deployment"]:
        d = r["deployment"]
        arms = ", ".join(f"{a['release']} {a['weight']:g}%" for a in d["arms"])
        out.append(
            (
                "Traffic",
                f"{arms} (revision {d['revision']}, since {d['since']} by {d['by']})"
                f" [audit #{d['audit']['seq']}]",
            )
        )
    approvals = [
        f"{a['approver']} at {a['at']}"
        + (f': "{a["comment"]}"' if a["comment"] else "")
        + _cite(a["audit"])
        for a in r["approvals"]
    ]
    out.append(("Approvals", "\n".join(approvals) or "none recorded"))
    g = r["gates"]
    if g["checks"] is None:
        gates = "not recorded for this promotion (promoted before gate results were audited)"
    elif not g["checks"]:
        gates = "no gate applied" + _cite(g["audit"])
    else:
        gates = (
            "\n".join(
                f"{'pass' if c['passed'] else 'FAIL'}  {c['rule']}: "
                f"required {c['required']}, had {c['actual']}"
                for c in g["checks"]
            )
            + (f"\nevaluation set {g['eval_set']}" if g["eval_set"] else "")
            + _cite(g["audit"])
        )
    out.append(("Gates", gates))
    rec = r["record"]
    data = (
        ", ".join(f"{d.get('role') or d.get('name')}: {d.get('digest')}" for d in rec["datasets"])
        or "none recorded"
    )
    code = rec["code"] or {}
    env = rec["environment"] or {}
    out.append(
        (
            "Record",
            "\n".join(
                [
                    f"data: {data}",
                    f"code: {code.get('commit') or 'not captured'}"
                    + (" (dirty)" if code.get("dirty") else ""),
                    f"params: {_kv(rec['params'])}",
                    f"metrics: {_kv(rec['metrics'])}",
                    f"environment: Python {env.get('python', '?')} on {env.get('platform', '?')}",
                ]
            ),
        )
    )
    if r["diff"]:
        d = r["diff"]
        keys = ("params", "metrics", "datasets", "code", "packages", "files", "config", "tags")
        changed = [k for k in keys if d.get(k)]
        out.append(
            (
                f"Against the previous production version ({r['previous_production']})",
                "changed: " + (", ".join(changed) or "nothing") + "\n" + _diff_metrics(d),
            )
        )
    around = [
        f"#{e['seq']} {e['ts']} {e['action']} by {e['actor']}"
        + (f": {e['reason']}" if e["reason"] else "")
        for e in r["around"]
    ]
    out.append(("Rollbacks and rollout decisions within 7 days", "\n".join(around) or "none"))
    p = r["proofs"]
    if p["checkpoint"]:
        cp = p["checkpoint"]
        out.append(
            (
                "Proofs",
                f"{len(p['events'])} cited events proven against checkpoint {cp['tree_size']} "
                f"(root {cp['root']}, key {cp['key_id']}, signed {cp['ts']}); "
                "`--format json` holds every path",
            )
        )
    return out


def _cite(fact: dict[str, Any] | None) -> str:
    return f" [audit #{fact['seq']}]" if fact else ""


def _kv(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(values.items())) or "none"


def _diff_metrics(d: dict[str, Any]) -> str:
    metrics = d.get("metrics") or []
    lines = []
    for m in metrics if isinstance(metrics, list) else []:
        if isinstance(m, dict):
            lines.append(f"metric {m.get('key')}: {m.get('a')} -> {m.get('b')}")
    return "\n".join(lines)


def render(report: dict[str, Any], fmt: str) -> str:
    import html
    import json

    if fmt == "json":
        return json.dumps(report, indent=2, ensure_ascii=False)
    sections = _lines(report)
    if fmt == "text":
        return (
            "\n\n".join(f"{h}\n" + "\n".join(f"  {x}" for x in b.splitlines()) for h, b in sections)
            + "\n"
        )
    if fmt == "markdown":
        parts = [f"# {sections[0][0]}\n"] + [f"- {x}" for x in sections[0][1].splitlines()]
        for h, b in sections[1:]:
            parts.append(f"\n## {h}\n")
            parts += [f"- {x}" for x in b.splitlines()]
        return "\n".join(parts) + "\n"
    if fmt == "html":
        body = [f"<h1>{html.escape(sections[0][0])}</h1>"]
        for i, (h, b) in enumerate(sections):
            if i:
                body.append(f"<h2>{html.escape(h)}</h2>")
            body.append(
                "<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in b.splitlines()) + "</ul>"
            )
        title = html.escape(sections[0][0])
        return (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
            f"<body>{''.join(body)}</body></html>\n"
        )
    raise InvalidInput(f"unknown format {fmt!r}: use text, markdown, json or html", field="format")
