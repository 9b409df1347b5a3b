"""The client's only gRPC adapter: channel, bearer token, stubs, error translation.

``grpc.RpcError`` never escapes this module: :func:`translate` turns it into
:class:`~hub.client.common.HubRefused` with a hint saying what to do next.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from spimeforge.v1 import accounts_pb2_grpc, designs_pb2_grpc, records_pb2_grpc

from hub.client.common import HubRefused, UsageError, env_or, log
from hub.client.local import read_local_file
from hub.config import is_loopback, parse_listen
from hub.errors import InvalidArgument

__all__ = ["Hub", "connect", "opened", "retry_delay", "translate"]

_HINTS = {
    "UNAVAILABLE": "is the hub running at {hub}? Set SPIME_HUB or --hub (and SPIME_CA for TLS).",
    "UNAUTHENTICATED": "set SPIME_TOKEN or --token to a token printed by `spime-hub user add`.",
    "PERMISSION_DENIED": "your account's role or membership does not allow this; "
                         "ask a maintainer or an admin.",
    # `spime get` refuses to overwrite the changed files of DIR: the head goes into a new folder.
    "ABORTED": "the design moved on since you fetched it: get the head into a new folder with "
               "`spime get DESIGN -o NEWDIR`, re-apply your change there, and push again.",
    "NOT_FOUND": "check the design name with `spime search` and a revision id with "
                 "`spime log DESIGN`.",
    "ALREADY_EXISTS": "choose another name.",
    "FAILED_PRECONDITION": "the hub's rules forbid this; the message names the rule.",
    "INVALID_ARGUMENT": "fix what the message names and try again.",
    "RESOURCE_EXHAUSTED": "a hub limit was reached (the message names it): make the request smaller, "
                          "wait and try again, or ask the hub operator to raise the limit.",
    "DEADLINE_EXCEEDED": "the hub did not answer in time; try again.",
}

# What was not found depends on the call: by the request's type (one per RPC, except
# GetOrderRequest, which GetOrder and WatchOrder share), else the design hint above.
_NOT_FOUND_HINTS = {
    "PushRequest": "check the design name with `spime search`; push with --new to create a design.",
    "GetOrderRequest": "check the order id with `spime orders --all`.",
    "CancelOrderRequest": "check the order id with `spime orders --all`.",
    "RateOrderRequest": "check the order id with `spime orders --all` (and --job, if given).",
    "PlaceOrderRequest": "check the design name with `spime search`; a quote (--quote) "
                         "expires: ask for a new one with `spime quote`.",
    "ListKeysRequest": "check the account name (`spime whoami` prints yours).",
    "RevokeKeyRequest": "check the fingerprint with `spime key list`.",
    "AcceptProposalRequest": "check the proposal id with `spime proposals DESIGN` "
                             "and the design name with `spime search`.",
    "DeclineProposalRequest": "check the proposal id with `spime proposals DESIGN` "
                              "and the design name with `spime search`.",
    "AddMaintainerRequest": "check the design name with `spime search` and the account name.",
    "LedgerRequest": "check the design name with `spime search`, or the node's name.",
    "GrantRequest": "check the design name with `spime search`, the revision id with "
                    "`spime log DESIGN` and the account name.",
    "GetGrantRequest": "check the grant id with `spime grant DESIGN --list`.",
    "RevokeGrantRequest": "check the grant id with `spime grant DESIGN --list`.",
}

_MAX_MESSAGE = 64 * 1024 * 1024
# A CA bundle of every public root is about 200 KB; a certificate or key file is a few KB.
_MAX_PEM_BYTES = 1 << 20
# A call the hub refuses for a rate or concurrency limit, saying when to come back (RetryInfo), is
# tried again after that delay, at most this many times and only for hints this short.
RETRIES, MAX_RETRY_WAIT_S = 3, 30.0


@dataclass
class Hub:
    """An open connection to a hub: stubs plus the call metadata."""

    address: str
    channel: grpc.Channel
    metadata: tuple[tuple[str, str], ...]

    @property
    def designs(self) -> designs_pb2_grpc.DesignsStub:
        """The Designs service stub."""
        return designs_pb2_grpc.DesignsStub(self.channel)

    @property
    def accounts(self) -> accounts_pb2_grpc.AccountsStub:
        """The Accounts service stub."""
        return accounts_pb2_grpc.AccountsStub(self.channel)

    @property
    def records(self) -> records_pb2_grpc.RecordsStub:
        """The Records service stub."""
        return records_pb2_grpc.RecordsStub(self.channel)

    def call(self, method: Any, request: Any, timeout: float = 60.0) -> Any:
        """Call a unary RPC with the token, translating gRPC errors.

        Raises:
            HubRefused: the hub answered with an error status.
        """
        for attempt in range(RETRIES + 1):
            try:
                return method(request, metadata=self.metadata, timeout=timeout)
            except grpc.RpcError as exc:
                wait = retry_delay(exc)
                if wait is None or wait > MAX_RETRY_WAIT_S or attempt == RETRIES:
                    raise translate(exc, self.address, request) from exc
                log(f"spime: the hub is busy ({exc.details()}); trying again in {wait:.1f} s")
                time.sleep(wait)
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def errors(self, request: Any = None) -> Iterator[None]:
        """Translate any ``grpc.RpcError`` raised inside into :class:`HubRefused` (the hints fit
        the call that sends ``request``, when given)."""
        try:
            yield
        except grpc.RpcError as exc:
            raise translate(exc, self.address, request) from exc

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()


def retry_delay(exc: grpc.RpcError) -> float | None:
    """How long the hub asked to wait before trying again (a RESOURCE_EXHAUSTED refusal's RetryInfo
    detail), or None when it gave no such hint."""
    if not isinstance(exc, grpc.Call) or exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return None
    try:
        status = rpc_status.from_call(exc)
    except ValueError:  # a status detail that contradicts the call's code: no hint
        return None
    for detail in status.details if status is not None else ():
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return max(0.0, float(info.retry_delay.ToTimedelta().total_seconds()))
    return None


def translate(exc: grpc.RpcError, address: str = "", request: Any = None) -> HubRefused:
    """Turn a gRPC error into :class:`HubRefused` with the status name and a hint (for
    NOT_FOUND, one that fits what the call sending ``request`` looks up)."""
    code = exc.code() if hasattr(exc, "code") else None
    name = code.name if code is not None else "UNKNOWN"
    details = exc.details() if hasattr(exc, "details") else str(exc)
    hint = _HINTS.get(name, "")
    if name == "NOT_FOUND" and request is not None:
        hint = _NOT_FOUND_HINTS.get(type(request).__name__, hint)
    return HubRefused(name, details or "", hint.format(hub=address))


def connect(args: argparse.Namespace, *, need_token: bool = True) -> Hub:
    """Open a channel to the hub named by ``--hub``/SPIME_HUB with ``--token``/SPIME_TOKEN.

    Raises:
        UsageError: no hub address or token was given, the address is not HOST:PORT with a
            port 1-65535, the token cannot be sent (not printable ASCII), or a TLS file is
            unreadable or not PEM.
    """
    address = env_or(getattr(args, "hub", None), "SPIME_HUB")
    token = env_or(getattr(args, "token", None), "SPIME_TOKEN")
    ca = env_or(getattr(args, "ca", None), "SPIME_CA")
    if not address:
        raise UsageError("no hub address: set SPIME_HUB=HOST:PORT or pass --hub")
    _check_address(address)
    if need_token and not token:
        raise UsageError("no token: set SPIME_TOKEN or pass --token "
                         "(a hub admin creates one with `spime-hub user add`)")
    # gRPC sends only printable ASCII in metadata; the token itself is a secret, never shown.
    if token and not (token.isascii() and token.isprintable()):
        raise UsageError("the token (SPIME_TOKEN or --token) holds characters other than printable "
                         "ASCII (a line break, a non-ASCII letter): copy it again from "
                         "`spime-hub user add`")
    options = [("grpc.max_receive_message_length", _MAX_MESSAGE),
               ("grpc.max_send_message_length", _MAX_MESSAGE)]
    if ca:
        channel = grpc.secure_channel(address, _tls(ca), options=options)
    else:
        if token and not is_loopback(parse_listen(address)[0]):
            log(f"spime: warning: the hub {address} is not on this machine and SPIME_CA (--ca) is not set: your "
                "token crosses the network in clear text, readable and usable by anyone on the way; set SPIME_CA "
                "to the hub's CA file")
        channel = grpc.insecure_channel(address, options=options)
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    return Hub(address=address, channel=channel, metadata=metadata)


def _check_address(address: str) -> None:
    """Refuse what gRPC would read wrongly (``:99999`` wraps around to another port)."""
    try:
        _, port = parse_listen(address)  # the check `spime-hub serve --listen` makes
    except InvalidArgument:
        port = 0
    if port == 0:
        raise UsageError(f"hub address {address[:200]!r} (SPIME_HUB or --hub): expected HOST:PORT "
                         "with a port 1-65535, e.g. 127.0.0.1:7443")


def _tls(ca: str) -> grpc.ChannelCredentials:
    """Trust ``ca``; present SPIME_CLIENT_CERT/SPIME_CLIENT_KEY when a hub requires client certificates (mTLS)."""
    files = {"CA": ca, "client certificate": env_or(None, "SPIME_CLIENT_CERT"),
             "client key": env_or(None, "SPIME_CLIENT_KEY")}
    if bool(files["client certificate"]) != bool(files["client key"]):
        raise UsageError("set both SPIME_CLIENT_CERT and SPIME_CLIENT_KEY (bash ops/tls/make-node-cert.sh), or neither")
    pem = {what: _pem(what, path) if path else None for what, path in files.items()}
    return grpc.ssl_channel_credentials(root_certificates=pem["CA"], private_key=pem["client key"],
                                        certificate_chain=pem["client certificate"])


def _pem(what: str, path: str) -> bytes:
    """The PEM bytes of a TLS file, checked here: gRPC would only fail the handshake later.

    Raises:
        UsageError: naming the file: missing, not a regular file (a pipe would block the
            read), over 1 MiB, or not a PEM certificate (CA, client certificate) or key.
    """
    data = read_local_file(Path(path), _MAX_PEM_BYTES, f"the {what} file")
    if data is None:
        raise UsageError(f"cannot read the {what} file {path!r}: no such file")
    try:
        if what == "client key":
            serialization.load_pem_private_key(data, password=None)
        else:
            x509.load_pem_x509_certificates(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # TypeError: a key with a password
        kind = "an unencrypted PEM private key" if what == "client key" else "PEM certificates"
        raise UsageError(f"the {what} file {path!r} does not hold {kind} "
                         "(-----BEGIN ...----- blocks)") from exc
    return data


@contextlib.contextmanager
def opened(args: argparse.Namespace, *, need_token: bool = True) -> Iterator[Hub]:
    """Context manager form of :func:`connect` that closes the channel."""
    hub = connect(args, need_token=need_token)
    try:
        yield hub
    finally:
        hub.close()


