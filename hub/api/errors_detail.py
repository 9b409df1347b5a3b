"""Machine-readable error details (google.rpc.Status) for every refusal of the hub.

A refused call carries, besides its status code and human message, a packed
``google.rpc.Status`` in the ``grpc-status-details-bin`` trailer (grpcio-status):

* ``ErrorInfo`` always: ``reason`` (e.g. ``LICENSE_ND_NO_DERIVATIVES``), ``domain``
  ``spimeforge.hub`` and, in ``metadata``, ``field`` when a request field is at fault;
* ``BadRequest`` with one field violation for INVALID_ARGUMENT (the field, or ``request``);
* ``RetryInfo`` when waiting and retrying the same call can help (``retryable`` errors).

Clients read them with ``grpc_status.rpc_status.from_call(error)``.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from hub import errors

__all__ = ["DOMAIN", "rich_status", "trailing_metadata"]

DOMAIN = "spimeforge.hub"
_MAX_DESCRIPTION = 2000


def _pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _duration(seconds: float) -> duration_pb2.Duration:
    whole = max(0, int(seconds))
    return duration_pb2.Duration(seconds=whole, nanos=int((max(seconds, 0.0) - whole) * 1e9))


def rich_status(error: errors.HubError, code: grpc.StatusCode) -> status_pb2.Status:
    """The google.rpc.Status of a refused call: code, message, ErrorInfo and friends.

    Args:
        error: the hub error that refused the call.
        code: the gRPC status the interceptor's table maps it to.

    Returns:
        The status with its details packed as ``Any``.
    """
    metadata = {"field": error.field} if error.field else {}
    details: list[Message] = [error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=metadata)]
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=error.field or "request", description=error.message[:_MAX_DESCRIPTION])
        details.append(error_details_pb2.BadRequest(field_violations=[violation]))
    if error.retryable:
        details.append(error_details_pb2.RetryInfo(retry_delay=_duration(error.retry_after_s)))
    return status_pb2.Status(code=code.value[0], message=error.message, details=[_pack(d) for d in details])


def trailing_metadata(error: errors.HubError, code: grpc.StatusCode) -> tuple[tuple[str, bytes | str], ...]:
    """The trailers that carry :func:`rich_status` (``grpc-status-details-bin``)."""
    status = rpc_status.to_status(rich_status(error, code))
    return tuple(status.trailing_metadata)
