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
]


class HubError(Exception):
    """Base of every error the hub reports to a caller.

    Attributes:
        message: what is wrong and, where it helps, what to do next.
        retryable: whether the same call may succeed later without changes.
    """

    retryable: bool = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retryable is not None:
            self.retryable = retryable

    def __str__(self) -> str:
        return self.message


class InvalidArgument(HubError):
    """The request itself is wrong; fix it before trying again."""


class InvalidManifest(InvalidArgument):
    """A spime.toml is malformed or misses a required field (the message names the field)."""


class InvalidLicense(InvalidArgument):
    """An SPDX expression is malformed or names an unknown licence (the message names it)."""


class IntegrityError(InvalidArgument):
    """Bytes, a revision id or a signature do not match what was declared."""


class NotFound(HubError):
    """The named design, revision, proposal, blob or account does not exist."""


class AlreadyExists(HubError):
    """Something with that name already exists."""


class PermissionDenied(HubError):
    """The caller is known but its role or membership does not allow this call."""


class Unauthenticated(HubError):
    """No credentials, or credentials the hub does not know."""


class FailedPrecondition(HubError):
    """The request is well formed but the current state forbids it."""


class LicenseConflict(FailedPrecondition):
    """A licence rule forbids the remix or fabrication (the message names rule and parent)."""


class InvalidTransition(FailedPrecondition):
    """A state machine was asked for a move its transition table does not allow."""


class StaleHead(HubError):
    """A revision's parent is no longer the design's head: pull, then push again."""

    retryable = True


class AlreadyClaimed(HubError):
    """Someone else holds the claim or lease (a race lost; retrying may pick another)."""

    retryable = True


class ResourceExhausted(HubError):
    """A configured limit (upload size, page size) was exceeded."""


class StorageError(HubError):
    """The database or blob store failed; the hub's fault, retry later."""

    retryable = True
