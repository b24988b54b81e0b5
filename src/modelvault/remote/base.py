"""What every part of the remote registry shares: the transport, the blob store over the wire,
and how references and projects become URL paths."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any, NoReturn
from urllib.parse import quote

from ..errors import InvalidInput
from ..refs import parse_ref
from ..registry import Registry
from .blobs import RemoteBlobStore
from .http import Transport


def seg(text: str) -> str:
    """*text* as one URL path segment (``:`` and ``@`` of references kept readable)."""
    return quote(text, safe=":@")


class RemoteBase(Registry):
    """The plumbing of :class:`~modelvault.remote.RemoteRegistry`'s parts."""

    url: str
    _http: Transport
    _blobs: RemoteBlobStore
    _user: str | None

    @property
    def _ctx(self) -> Any:  # type: ignore[override]
        raise InvalidInput(
            "this operation is not available through a server yet: run it where the "
            "registry's store is (unset MODELVAULT_URL)"
        )

    def _unsupported(self, what: str) -> NoReturn:
        raise InvalidInput(f"{what} is not available through a server yet (unset MODELVAULT_URL)")

    # -- plumbing ---------------------------------------------------------------------------
    def _split(self, ref: str) -> tuple[str, str]:
        parsed = parse_ref(ref)
        project = parsed.project or self.settings.project
        return project, str(replace(parsed, project=None))

    def _model(self, model: str) -> tuple[str, str]:
        project, rest = self._split(model)
        name = parse_ref(rest).model
        return project, name

    def _ref_path(self, ref: str, tail: str) -> str:
        """The path of *tail* under the version *ref* names."""
        project, rest = self._split(ref)
        return f"/projects/{seg(project)}/refs/{seg(rest)}/{tail}"

    def _p(self, project: str | None) -> str:
        return seg(project or self.settings.project)

    def close(self) -> None:
        self._http.close()

    def init(self) -> dict[str, str]:
        ready = self._http.client.get("/readyz").json()
        return {"server": self.url, "schema": str(ready.get("schema", ready.get("status")))}

    def upgrade_schema(self) -> Any:
        self._unsupported("upgrading the schema (the server migrates itself at start)")

    def schema_status(self) -> Any:
        self._unsupported("schema status")

    @property
    def actor(self) -> str:
        if self._user is None:
            self._user = str(self._http.call("GET", "/whoami")["user"])
        return self._user

    def _time(self, value: datetime | str | None) -> datetime | None:
        if value is None or isinstance(value, datetime):
            return value
        from ..timeutil import parse_time, utc_now

        return parse_time(value, now=utc_now())
