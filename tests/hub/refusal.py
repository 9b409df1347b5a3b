"""Assert a refused call: its status, the machine-readable details, and an unchanged store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.hub.harness import InProcessHub


@dataclass(frozen=True)
class Refusal:
    code: grpc.StatusCode
    message: str
    info: error_details_pb2.ErrorInfo
    bad_request: error_details_pb2.BadRequest | None
    retry: error_details_pb2.RetryInfo | None


def details_of(error: grpc.RpcError) -> Refusal:
    """Decode the google.rpc.Status the hub packed into the trailers."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, f"no grpc-status-details-bin on {error.code()}: {error.details()}"
    found: dict[str, Any] = {}
    for packed in status.details:
        for cls in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest, error_details_pb2.RetryInfo):
            if packed.Is(cls.DESCRIPTOR):
                message = cls()
                packed.Unpack(message)
                found[cls.__name__] = message
    assert "ErrorInfo" in found and found["ErrorInfo"].domain == "spimeforge.hub"
    return Refusal(error.code(), error.details(), found["ErrorInfo"], found.get("BadRequest"), found.get("RetryInfo"))


def refused(api: InProcessHub, call: Callable[[], object], code: grpc.StatusCode, reason: str | tuple[str, ...],
            *words: str) -> Refusal:
    """Run ``call``; it must fail with ``code`` and ``reason`` (or one of several), name ``words``
    and change nothing."""
    before = api.snapshot()
    with pytest.raises(grpc.RpcError) as info:
        call()
    refusal = details_of(info.value)
    assert refusal.code == code, refusal.message
    reasons = (reason,) if isinstance(reason, str) else reason
    assert refusal.info.reason in reasons, (refusal.info.reason, refusal.message)
    for word in words:
        assert word in refusal.message, (word, refusal.message)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        assert refusal.bad_request is not None and refusal.bad_request.field_violations[0].field
    assert api.snapshot() == before
    return refusal
