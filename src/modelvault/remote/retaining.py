"""The remote registry's retention: legal holds, artifact deletion, pruning, the cold tier,
retention policies and garbage collection through the server."""

from __future__ import annotations

from typing import Any

from .base import RemoteBase, seg


class RemoteRetention(RemoteBase):
    """Retention methods of :class:`~modelvault.remote.RemoteRegistry`."""

    # -- retention --------------------------------------------------------------------------
    def hold(self, ref: str, *, reason: str) -> dict[str, Any]:
        result: dict[str, Any] = self._http.call(
            "POST", self._ref_path(ref, "hold"), json={"reason": reason}
        )
        return result

    def release_hold(self, ref: str, *, reason: str) -> dict[str, Any]:
        result: dict[str, Any] = self._http.call(
            "DELETE", self._ref_path(ref, "hold"), params={"reason": reason}
        )
        return result

    def holds(self) -> list[dict[str, Any]]:
        """Legal holds in every project this token may read."""
        result: list[dict[str, Any]] = self._http.call("GET", "/holds")
        return result

    def delete_artifact(self, ref: str, *, reason: str) -> dict[str, Any]:
        result: dict[str, Any] = self._http.call(
            "DELETE", self._ref_path(ref, "artifact"), params={"reason": reason}
        )
        return result

    def prune(
        self, model: str, *, keep_last: int, reason: str | None = None, dry_run: bool = False
    ) -> list[dict[str, Any]]:
        project, name = self._model(model)
        result: list[dict[str, Any]] = self._http.call(
            "POST",
            f"/projects/{seg(project)}/models/{seg(name)}/prune",
            json={"keep_last": keep_last, "reason": reason, "dry_run": dry_run},
        )
        return result

    def restore(self, ref: str) -> dict[str, Any]:
        result: dict[str, Any] = self._http.call("POST", self._ref_path(ref, "restore"))
        return result

    def archive_of(self, ref: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self._http.call("GET", self._ref_path(ref, "archive"))
        return result

    def apply_retention(self, *, dry_run: bool = False) -> list[dict[str, Any]]:
        """The server's retention policy, applied by the server (global admins)."""
        result: list[dict[str, Any]] = self._http.call(
            "POST", "/retention/apply", json={"dry_run": dry_run}
        )
        return result

    def gc(self, *, dry_run: bool = False, grace_seconds: float = 3600.0) -> dict[str, Any]:
        """The server's garbage collection (global admins)."""
        result: dict[str, Any] = self._http.call(
            "POST", "/gc", json={"dry_run": dry_run, "grace_seconds": grace_seconds}
        )
        return result
