"""Statements on the hot paths (register, audit append, lookups), built once.

Building a statement with ``.values(...)`` coerces every value on every call; these take
their values as execution parameters instead, which keeps SQLAlchemy's compiled cache warm.
"""

from __future__ import annotations

from sqlalchemy import bindparam, insert, select, update

from . import schema

_M, _P, _V = schema.models, schema.projects, schema.versions
_H, _E = schema.audit_head, schema.audit_events

PROJECT_ID = select(_P.c.id).where(_P.c.name == bindparam("project"))
INSERT_PROJECT = insert(_P).returning(_P.c.id)
MODEL_ID_AND_KIND = (
    select(
        _M.c.id,
        select(_V.c.kind).where(_V.c.model_id == _M.c.id).limit(1).scalar_subquery().label("kind"),
    )
    .select_from(_M.join(_P, _P.c.id == _M.c.project_id))
    .where(_P.c.name == bindparam("project"), _M.c.name == bindparam("model"))
)
INSERT_MODEL = insert(_M).returning(_M.c.id)
BUMP_NUMBER = (
    update(_M)
    .where(_M.c.id == bindparam("model_id"))
    .values(latest_number=_M.c.latest_number + 1)
    .returning(_M.c.latest_number)
)
INSERT_VERSION = insert(_V).returning(_V.c.id)
INSERT_PARENTS = insert(schema.version_parents)
INSERT_BLOBS = insert(schema.version_blobs)
INSERT_STAGE = insert(schema.stage_intervals)

LOCK_HEAD = select(_H.c.seq, _H.c.hash).where(_H.c.id == 1).with_for_update()
INSERT_EVENT = insert(_E)
INSERT_PERSONAL = insert(schema.audit_personal)
MOVE_HEAD = (
    update(_H)
    .where(_H.c.id == 1, _H.c.seq == bindparam("old_seq"))
    .values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))
)
