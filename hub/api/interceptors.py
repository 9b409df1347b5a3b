"""One async server interceptor: authenticate, authorise, admit, map HubError → StatusCode, log.

Admission (hub.workers.Admission, rules in hub.limits) comes right after the token
check and before the request is decoded: the interceptor hands grpc no deserializer
and decodes each message itself once the call is admitted, so a caller over its
rate or concurrency limit costs no protobuf parsing and no database work.

The HubError → status table lives here and only here; each refusal also carries
machine-readable details (hub/api/errors_detail.py). A request whose bytes do not
decode as its protobuf message is INVALID_ARGUMENT (grpc.aio itself would answer
UNKNOWN): the interceptor swaps in a deserializer that never raises (for the blob
streams, a decoder of the wire format: hub.api.blob_wire). That deserializer counts every
repeated field against its maximum (hub.api.item_counts) before any check reads an item,
so a request of millions of empty items costs its decoding, not seconds of the event loop.
An unexpected
exception becomes INTERNAL with its traceback in the log; the server keeps running.

The hub's one public method, Nodes.Enroll (no token), goes through the same decoding, error
mapping and admission; its calls are counted per peer address instead of per account. So are
failed authentications (hub.limits, rate class ``auth``): a token that matches no account costs
its address from a budget, and an address that spent it is refused before its token is checked.

Refusals are logged per account, method and status at most once per
REFUSAL_LOG_INTERVAL_S, then summarised in one line with their count
(:class:`RefusalLog`): a caller sending thousands of bad requests costs the hub
a few log lines, not thousands. Every refusal is still counted, by method and
status, in the hub's metrics (``spime_hub_rpcs``, hub/api/metrics.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ipaddress
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc import aio

from hub import errors
from hub.api.blob_wire import decode_chunk
from hub.api.errors_detail import trailing_metadata
from hub.api.field_limits import check_request
from hub.api.item_counts import too_many
from hub.api.live_calls import LiveCalls
from hub.api.text_fields import nul_field, nul_refusal
from hub.api.wide_numbers import too_wide, too_wide_refusal
from hub.auth import authorize, bearer_token, is_public, short_name
from hub.domain import Account
from hub.store.accounts import token_digest
from hub.workers import Admission

__all__ = ["REFUSAL_LOG_INTERVAL_S", "STATUS_OF", "HubInterceptor", "RefusalLog", "current_account", "peer_host",
           "peer_network", "status_of"]

log = logging.getLogger("hub.api")

# Most specific first: the first class an error is an instance of decides.
STATUS_OF: tuple[tuple[type[errors.HubError], grpc.StatusCode], ...] = (
    (errors.LicenseConflict, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.InvalidTransition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.InvalidManifest, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.InvalidLicense, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.IntegrityError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.StaleHead, grpc.StatusCode.ABORTED),
    (errors.AlreadyClaimed, grpc.StatusCode.ABORTED),
    (errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.StorageError, grpc.StatusCode.UNAVAILABLE),
)

_account: contextvars.ContextVar[Account] = contextvars.ContextVar("hub_account")


def current_account() -> Account:
    """The authenticated caller of the RPC being served."""
    return _account.get()


def status_of(error: errors.HubError) -> grpc.StatusCode:
    """The gRPC status of a hub error."""
    return next((code for cls, code in STATUS_OF if isinstance(error, cls)), grpc.StatusCode.UNKNOWN)


Authenticate = Callable[[str], Awaitable[Account | None]]
Guard = Callable[[aio.ServicerContext], Awaitable[Account | None]]
"""The token check of one method: the caller's account, None for a public method (raises
Unauthenticated, PermissionDenied)."""
REFUSAL_LOG_INTERVAL_S = 10.0
"""How often one account's refusals of one method and status get a log line (the others are counted)."""

RefusalKey = tuple[str, str, str]
"""(account, method, status code name)."""


class RefusalLog:
    """Which refusals get a log line: the first of each key per interval; the rest are counted
    and reported in one summary line once the interval is over. Pure: the caller passes ``now``.
    """

    def __init__(self, interval_s: float = REFUSAL_LOG_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._open: dict[RefusalKey, list[float]] = {}  # key -> [interval start, refusals not logged]
        self._next_sweep = -math.inf

    def note(self, key: RefusalKey, now: float) -> tuple[bool, int]:
        """Whether to log this refusal, and how many of the key's refusals the interval before did not log."""
        entry = self._open.get(key)
        if entry is not None and now - entry[0] < self.interval_s:
            entry[1] += 1
            return False, 0
        self._open[key] = [now, 0]
        return True, int(entry[1]) if entry is not None else 0

    def due(self, now: float) -> list[tuple[RefusalKey, int]]:
        """Keys whose interval is over with refusals not logged, and their counts (the keys are forgotten).

        Looks at most once per interval; returns [] in between.
        """
        if now < self._next_sweep:
            return []
        self._next_sweep = now + self.interval_s
        return self._close(lambda start: now - start >= self.interval_s)

    def flush(self) -> list[tuple[RefusalKey, int]]:
        """Every key's refusals not logged yet (the server is stopping)."""
        return self._close(lambda start: True)

    def _close(self, ended: Callable[[float], bool]) -> list[tuple[RefusalKey, int]]:
        closed = [(key, int(entry[1])) for key, entry in self._open.items() if ended(entry[0])]
        for key, _ in closed:
            del self._open[key]
        return [(key, count) for key, count in closed if count]


class _Refusals:
    """Logs refusals through a RefusalLog."""

    def __init__(self, interval_s: float) -> None:
        self.log = RefusalLog(interval_s)

    def refused(self, method: str, code: grpc.StatusCode, exc: errors.HubError, account: Account | None,
                elapsed_ms: float) -> None:
        now = time.monotonic()
        name = account.name if account is not None else ""
        first, before = self.log.note((name, method, code.name), now)
        if before:
            _summary((name, method, code.name), before, self.log.interval_s)
        if first:
            log.info("rpc refused", extra={"rpc": method, "code": code.name, "reason": exc.reason,
                                           "error": exc.message, "ms": elapsed_ms, "account": name})
        for key, count in self.log.due(now):
            _summary(key, count, self.log.interval_s)

    def flush(self) -> None:
        for key, count in self.log.flush():
            _summary(key, count, self.log.interval_s)


def _summary(key: RefusalKey, count: int, interval_s: float) -> None:
    account, method, code = key
    log.info("rpc refusals not logged", extra={"rpc": method, "code": code, "account": account, "count": count,
                                               "interval_s": interval_s})


class HubInterceptor(aio.ServerInterceptor):
    """Wraps every handler: auth + role check before, error mapping and one log line after."""

    def __init__(self, authenticate: Authenticate, admission: Admission | None = None,
                 refusal_log_interval_s: float = REFUSAL_LOG_INTERVAL_S) -> None:
        self._authenticate = authenticate
        self._admission = admission if admission is not None else Admission({}, {})
        self._refusals = _Refusals(refusal_log_interval_s)
        # method -> (the servicer's handler, its wrapped handler): built once per method, not per call
        self._wrapped: dict[str, tuple[Any, Any]] = {}
        # streaming calls in flight, ended by the server when their token is revoked (hub.api.live_calls)
        self.live_calls = LiveCalls()

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]], details: Any) -> Any:
        handler = await continuation(details)
        method = details.method
        if handler is None or (is_public(method) and not method.startswith(_OWN_METHODS)):
            return handler  # grpc's health and reflection services
        wrapped = self._wrapped.get(method)
        if wrapped is None or wrapped[0] is not handler:
            guard = _public if is_public(method) else self._guard(method)
            wrapped = (handler, _wrap(handler, method, guard, self._admission, self._refusals, self.live_calls))
            self._wrapped[method] = wrapped
        return wrapped[1]

    def flush_refusal_log(self) -> None:
        """Log the summaries of refusals not logged yet (call when the server stops)."""
        self._refusals.flush()

    def _guard(self, method: str) -> Guard:
        failures = self._admission.failures

        async def guard(context: aio.ServicerContext) -> Account:
            # An address that spent its budget of failed authentications is refused before its token is
            # looked up, right or wrong: otherwise a right guess would still answer differently.
            await failures.admit(lambda: peer_network(context.peer() or ""))
            token = bearer_token(tuple(context.invocation_metadata() or ()))
            account = await self._authenticate(token)
            if account is None:
                failures.failed(peer_network(context.peer() or ""))
            return authorize(method, account)

        return guard


_OWN_METHODS = "/spimeforge."


async def _public(context: aio.ServicerContext) -> None:
    """The guard of a public method of the hub (Nodes.Enroll): no token, no account; its calls are
    admitted per peer address (hub.limits.RATE_CLASSES)."""


def peer_host(peer: str) -> str:
    """The address a call came from without its port ("ipv4:127.0.0.1:5000" -> "ipv4:127.0.0.1"): one
    host's calls share one rate, whichever connection they use."""
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6") and ":" in rest:
        return f"{kind}:{rest.rpartition(':')[0]}"
    return peer


def peer_network(peer: str) -> str:
    """The address whose calls share a per-address limit: the host (:func:`peer_host`), for IPv6 its
    /64 (one subscriber's network: an attacker holding one has 2**64 addresses to rotate through);
    an IPv4 address seen through a dual-stack socket ("ipv6:[::ffff:192.0.2.1]") counts as itself."""
    host = peer_host(peer)
    kind, _, address = host.partition(":")
    if kind != "ipv6":
        return host
    try:
        ip = ipaddress.IPv6Address(address.strip("[]"))
    except ValueError:
        return host
    if ip.ipv4_mapped is not None:
        return f"ipv4:{ip.ipv4_mapped}"
    return f"ipv6:[{ipaddress.IPv6Network((ip, 64), strict=False).network_address}]/64"


def _caller(account: Account | None, context: aio.ServicerContext) -> str:
    """Whom admission counts a call against: its account, or for a public method its peer's address."""
    return account.name if account is not None else f"peer {peer_network(context.peer() or '')}"


async def _fail(context: aio.ServicerContext, call: _Call, exc: BaseException, started: float,
                account: Account | None) -> None:
    elapsed, method = round((time.monotonic() - started) * 1000, 1), call.method
    if isinstance(exc, errors.HubError):
        code = status_of(exc)
        call.refusals.refused(method, code, exc, account, elapsed)
        await context.abort(code, exc.message, trailing_metadata(exc, code))
    log.error("rpc failed", exc_info=exc, extra={"rpc": method, "code": "INTERNAL", "ms": elapsed})
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method}; see the hub's log")


def _ok(method: str, started: float, account: Account | None) -> None:
    elapsed = round((time.monotonic() - started) * 1000, 1)
    log.info("rpc", extra={"rpc": method, "code": "OK", "ms": elapsed, "account": account.name if account else ""})


class _Undecodable:
    """Stands in for a request message whose bytes did not decode."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


class _Refused:
    """Stands in for a decoded request refused before any handler sees it (a NUL in a text field,
    a number over what the databases store)."""

    __slots__ = ("error",)

    def __init__(self, error: errors.InvalidArgument) -> None:
        self.error = error


def _safe_deserializer(deserialize: Callable[[bytes], Any] | None, check_nul: bool) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def safe(data: bytes) -> Any:
        try:
            message = deserialize(data)
        except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError, RecursionError, …
            return _Undecodable(exc)
        # Counted before anything walks the items (hub.api.item_counts): len() only.
        if over := too_many(message):
            return _Refused(_too_many_items(*over))
        # A NUL in a string is a 0x00 byte on the wire: without one (memchr, no Python walk) every
        # text field is clean, which keeps huge repeated fields cheap.
        if check_nul and b"\x00" in data and (field := nul_field(message)):
            return _Refused(nul_refusal(field))
        if wide := too_wide(message):
            return _Refused(too_wide_refusal(*wide))
        try:
            check_request(message)
        except errors.InvalidArgument as exc:
            return _Refused(exc)
        return message

    return safe


def _too_many_items(name: str, count: int, maximum: int) -> errors.InvalidArgument:
    return errors.InvalidArgument(f"{name} has {count:,} items, over its maximum of {maximum:,} (limit {name})",
                                  reason="FIELD_TOO_LARGE", field=name)


def _safe_wire_decoder(decode: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """A hand decoder (hub.api.blob_wire) that checks its fields itself, made never to raise."""

    def safe(data: bytes) -> Any:
        try:
            return decode(data)
        except DecodeError as exc:
            return _Undecodable(exc)
        except errors.InvalidArgument as exc:
            return _Refused(exc)

    return safe


def _undecodable(method: str, bad: _Undecodable) -> errors.InvalidArgument:
    return errors.InvalidArgument(
        f"the request to {method} is not a valid protobuf message ({type(bad.error).__name__}); "
        "use the hub's .proto definitions", reason="REQUEST_UNDECODABLE", field="request")


# The agent Session validates every message itself and records a refused report (so the agent's
# outbox does not resend it forever); the generic NUL check would end the stream before that.
_SELF_VALIDATED = frozenset({"/spimeforge.v1.Nodes/Session"})
# The blob streams: their 512 KiB chunks are decoded by hand (same acceptance and refusals as protobuf,
# hub.api.blob_wire), the bytes handed on as a view of the received message instead of copied twice;
# the servicers get hub.service.blobs.Chunk values.
_WIRE_DECODERS: dict[str, Callable[[bytes], Any]] = {
    "/spimeforge.v1.Designs/UploadBlob": decode_chunk,
    "/spimeforge.v1.Nodes/PutArtifact": decode_chunk,
}
# Streams whose service rechecks their token itself (NodeService.recheck_credentials also takes the
# node offline); every other stream is registered in LiveCalls.
_SELF_RECHECKED = frozenset({"/spimeforge.v1.Nodes/Session"})
_REVOKED = errors.Unauthenticated("the token this call was opened with was revoked while it ran; "
                                  "ask an admin for a new token (spime-hub user token)")


def _check_message(request: Any, method: str) -> Any:
    if isinstance(request, _Undecodable):
        raise _undecodable(method, request)
    if isinstance(request, _Refused):
        raise request.error
    return request


Decode = Callable[[bytes], Any] | None


def _decoded(request: Any, method: str, decode: Decode) -> Any:
    """The request (or request stream) decoded and checked, message by message."""
    if hasattr(request, "__aiter__"):
        return _decoded_stream(request, method, decode)
    return _check_message(decode(request) if decode is not None else request, method)


async def _decoded_stream(requests: AsyncIterator[Any], method: str, decode: Decode) -> AsyncIterator[Any]:
    async for request in requests:
        yield _check_message(decode(request) if decode is not None else request, method)


def _wrap(handler: Any, method: str, guard: Guard, admission: Admission, refusals: _Refusals,
          live_calls: LiveCalls) -> Any:
    wire = _WIRE_DECODERS.get(method)
    decode = (_safe_wire_decoder(wire) if wire is not None
              else _safe_deserializer(handler.request_deserializer, method not in _SELF_VALIDATED))
    streams = not handler.unary_unary and method not in _SELF_RECHECKED
    call = _Call(method, short_name(method), guard, admission, decode, refusals, live_calls if streams else None)
    # grpc hands the wrappers the request bytes (no deserializer): they decode once the call is admitted.
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(_unary(handler.unary_unary, call), None, handler.response_serializer)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(_unary(handler.stream_unary, call), None, handler.response_serializer)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            _streaming(handler.unary_stream, call), None, handler.response_serializer)
    return grpc.stream_stream_rpc_method_handler(
        _streaming(handler.stream_stream, call), None, handler.response_serializer)


class _Call:
    """What every call of one method needs: its names, the token check, admission and decoding, and
    for a stream the registry that ends it when its token is revoked."""

    __slots__ = ("admission", "decode", "guard", "live", "method", "name", "refusals")

    def __init__(self, method: str, name: str, guard: Guard, admission: Admission, decode: Decode,
                 refusals: _Refusals, live: LiveCalls | None) -> None:
        self.method, self.name, self.guard, self.admission, self.decode = method, name, guard, admission, decode
        self.refusals, self.live = refusals, live

    def registered(self, context: aio.ServicerContext) -> contextlib.AbstractContextManager[None]:
        """While a stream runs: registered by its token, so that revoking the token ends it."""
        if self.live is None:
            return contextlib.nullcontext()
        return self.live.opened(token_digest(bearer_token(tuple(context.invocation_metadata() or ()))))

    def sending(self) -> contextlib.AbstractContextManager[None]:
        """While a stream waits for grpc to send the message it yielded."""
        return contextlib.nullcontext() if self.live is None else self.live.sending()

    def revoked(self) -> bool:
        """Whether the stream's token was revoked: its cancellation being handled, or a mark set while
        grpc sent its message (asked once)."""
        return self.live is not None and self.live.take_revoked()


def _unary(behavior: Callable[..., Awaitable[Any]], call: _Call) -> Callable[..., Awaitable[Any]]:
    method = call.method

    async def wrapper(request: Any, context: aio.ServicerContext) -> Any:
        started, account = time.monotonic(), None
        try:
            account = await call.guard(context)
            if account is not None:
                _account.set(account)
            async with call.admission.enter(call.name, _caller(account, context)):
                with call.registered(context):
                    response = await behavior(_decoded(request, method, call.decode), context)
        except aio.AbortError:
            raise
        except asyncio.CancelledError:
            if not call.revoked():
                raise
            await _fail(context, call, _REVOKED, started, account)
        except Exception as exc:  # noqa: BLE001 - mapped to a status, never crashes the server
            await _fail(context, call, exc, started, account)
        _ok(method, started, account)
        return response

    return wrapper


def _streaming(behavior: Callable[..., AsyncIterator[Any]], call: _Call) -> Callable[..., AsyncIterator[Any]]:
    method = call.method

    async def wrapper(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
        started, account = time.monotonic(), None
        try:
            account = await call.guard(context)
            if account is not None:
                _account.set(account)
            async with call.admission.enter(call.name, _caller(account, context)):
                with call.registered(context):
                    async for item in behavior(_decoded(request, method, call.decode), context):
                        with call.sending():
                            yield item
                        if call.revoked():  # marked while grpc sent the item (see hub.api.live_calls)
                            await _fail(context, call, _REVOKED, started, account)
        except aio.AbortError:
            raise
        except asyncio.CancelledError:
            if not call.revoked():
                raise
            await _fail(context, call, _REVOKED, started, account)
        except Exception as exc:  # noqa: BLE001
            await _fail(context, call, exc, started, account)
        _ok(method, started, account)

    return wrapper
