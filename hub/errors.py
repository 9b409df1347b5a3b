"""The hub's error vocabulary.

Every error says who is at fault (the caller, the current state of the data, or
the hub) and whether retrying the same call can help. The gRPC layer maps each
class to one status code (hub/api/interceptors.py); nothing else in the hub
knows about gRPC.
"""

from __future__ import annotations

__all__ = [
    "AlreadyClaimed",
    "AlreadyExists",
    "FailedPrecondition",
    "HubError",
    "IntegrityError",
    "InvalidArgument",
    "InvalidLicense",
    "InvalidManifest",
    "InvalidTransition",
    "LicenseConflict",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "StaleHead",
    "StorageError",
    "Unauthenticated",
    "local_file_problem",
]


class HubError(Exception):
    """Base of every error the hub reports to a caller.

    Attributes:
        message: what is wrong and, where it helps, what to do next.
        retryable: whether the same call may succeed later without changes.
        reason: a stable UPPER_SNAKE_CASE code for programs (google.rpc.ErrorInfo
            reason), e.g. ``LICENSE_ND_NO_DERIVATIVES``; each class has a default.
        field: the request field at fault (``files[3].path``), or "" when none.
        retry_after_s: how long to wait before retrying, when ``retryable``.
    """

    retryable: bool = False
    reason: str = "HUB_ERROR"
    field: str = ""
    retry_after_s: float = 1.0

    def __init__(self, message: str, *, retryable: bool | None = None, reason: str | None = None,
                 field: str | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retryable is not None:
            self.retryable = retryable
        if reason is not None:
            self.reason = reason
        if field is not None:
            self.field = field
        if retry_after_s is not None:
            self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        return self.message


class InvalidArgument(HubError):
    """The request itself is wrong; fix it before trying again."""

    reason = "INVALID_ARGUMENT"


class InvalidManifest(InvalidArgument):
    """A spime.toml is malformed or misses a required field (the message names the field)."""

    reason = "MANIFEST_INVALID"
    field = "manifest_toml"


class InvalidLicense(InvalidArgument):
    """An SPDX expression is malformed or names an unknown licence (the message names it)."""

    reason = "LICENSE_INVALID"
    field = "license"


class IntegrityError(InvalidArgument):
    """Bytes, a revision id or a signature do not match what was declared."""

    reason = "INTEGRITY_MISMATCH"


class NotFound(HubError):
    """The named design, revision, proposal, blob or account does not exist."""

    reason = "NOT_FOUND"


class AlreadyExists(HubError):
    """Something with that name already exists."""

    reason = "ALREADY_EXISTS"


class PermissionDenied(HubError):
    """The caller is known but its role or membership does not allow this call."""

    reason = "PERMISSION_DENIED"


class Unauthenticated(HubError):
    """No credentials, or credentials the hub does not know."""

    reason = "UNAUTHENTICATED"


class FailedPrecondition(HubError):
    """The request is well formed but the current state forbids it."""

    reason = "FAILED_PRECONDITION"


class LicenseConflict(FailedPrecondition):
    """A licence rule forbids the remix or fabrication (the message names rule and parent)."""

    reason = "LICENSE_CONFLICT"


class InvalidTransition(FailedPrecondition):
    """A state machine was asked for a move its transition table does not allow."""

    reason = "INVALID_TRANSITION"


class StaleHead(HubError):
    """A revision's parent is no longer the design's head: pull, then push again."""

    retryable = True
    reason = "STALE_HEAD"


class AlreadyClaimed(HubError):
    """Someone else holds the claim or lease (a race lost; retrying may pick another)."""

    retryable = True
    reason = "ALREADY_CLAIMED"


class ResourceExhausted(HubError):
    """A configured limit (upload size, page size) was exceeded."""

    reason = "LIMIT_EXCEEDED"


class StorageError(HubError):
    """The database or blob store failed; the hub's fault, retry later."""

    retryable = True
    reason = "STORAGE_UNAVAILABLE"


def local_file_problem(exc: OSError) -> str:
    """What a command-line tool tells its user when a path it was given cannot be used (too long,
    not permitted, a file where a folder belongs ...): the path, the system's reason, what to do."""
    name = str(exc.filename or "")
    shown = name if len(name) <= 120 else f"{name[:60]}...{name[-40:]} ({len(name)} characters)"
    reason = exc.strerror or type(exc).__name__
    where = f" {shown!r}" if name else ""
    return f"cannot use{where}: {reason}; check the path, that it is the kind of file or folder the command " \
           "expects, and that you may read and write it"
