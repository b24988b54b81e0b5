"""The exception tree of modelvault: every known failure is one of these classes.

    ModelVaultError                 code            exit
    ├── NotFound                    not_found         3
    ├── AlreadyExists               already_exists    4
    ├── Conflict                    conflict          5
    ├── InvalidInput                invalid_input     2
    │   ├── QuerySyntaxError        query_syntax      2
    │   └── PayloadTooLarge         too_large         2
    ├── Forbidden                   forbidden         6
    ├── GateFailed                  gate_failed       7
    ├── IntegrityError              integrity         8
    │   └── AuditChainBroken        audit_broken      8
    ├── StoreError                  store_error       9
    └── Unauthenticated             unauthenticated  10

Each error carries structured fields (``model``, ``version``, ``field`` ...) and a stable
``code``; the CLI maps classes to exit codes in one table and the server sends the
same code in its error envelope.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ModelVaultError(Exception):
    """Base class of every error modelvault raises on purpose."""

    code: ClassVar[str] = "error"
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields: dict[str, Any] = {k: v for k, v in fields.items() if v is not None}

    def __getattr__(self, name: str) -> Any:
        fields = self.__dict__.get("fields", {})
        if name in fields:
            return fields[name]
        raise AttributeError(name)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.fields}


class NotFound(ModelVaultError):
    """A project, model, version, alias or blob does not exist."""

    code = "not_found"
    exit_code = 3


class AlreadyExists(ModelVaultError):
    """Creating something whose name or identity is already taken."""

    code = "already_exists"
    exit_code = 4


class Conflict(ModelVaultError):
    """The state changed under the caller (compare-and-set mismatch, illegal transition)."""

    code = "conflict"
    exit_code = 5


class InvalidInput(ModelVaultError):
    """The caller's input is malformed: names, paths, values, references."""

    code = "invalid_input"
    exit_code = 2


class QuerySyntaxError(InvalidInput):
    """A search query could not be parsed; ``position`` is the 0-based offset of the fault."""

    code = "query_syntax"

    def __init__(self, message: str, *, query: str, position: int) -> None:
        super().__init__(message, query=query, position=position)

    def pointer(self) -> str:
        """The query with a caret under the offending position."""
        query: str = self.fields["query"]
        position: int = self.fields["position"]
        return f"{query}\n{' ' * position}^"


class PayloadTooLarge(InvalidInput):
    """A request body is over the server's documented limit (HTTP 413)."""

    code = "too_large"


class Forbidden(ModelVaultError):
    """The actor may not do this (approving their own version, missing approvals)."""

    code = "forbidden"
    exit_code = 6


class GateFailed(ModelVaultError):
    """A promotion rule blocked the change; ``rules`` lists each rule and its outcome."""

    code = "gate_failed"
    exit_code = 7


class IntegrityError(ModelVaultError):
    """Stored bytes or records do not match their digests."""

    code = "integrity"
    exit_code = 8


class AuditChainBroken(IntegrityError):
    """The audit chain does not verify; ``seq`` is the first bad sequence number."""

    code = "audit_broken"


class StoreError(ModelVaultError):
    """The metadata or blob store failed (disk full, database locked too long)."""

    code = "store_error"
    exit_code = 9


class Unauthenticated(ModelVaultError):
    """No valid credentials: the token is missing, malformed, unknown, expired or revoked."""

    code = "unauthenticated"
    exit_code = 10


ERROR_CLASSES: tuple[type[ModelVaultError], ...] = (
    NotFound,
    AlreadyExists,
    Conflict,
    InvalidInput,
    QuerySyntaxError,
    PayloadTooLarge,
    Forbidden,
    GateFailed,
    IntegrityError,
    AuditChainBroken,
    StoreError,
    Unauthenticated,
)
