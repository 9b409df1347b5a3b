"""Customers' commands: ``spime quote``, ``spime order``, ``spime watch``, ``spime cancel``, ``spime orders``, ``spime rate``.

    spime quote DESIGN[@REV] --material M [--qty N] [--near LAT,LON] [--param k=v ...] [--max-km 50] [--gift]
    spime order DESIGN[@REV] ... [--quote ID [--option N] | --best cheapest|fastest|nearest] [--key K] [--qr FILE]
    spime watch ORDER            (progress on stderr; --json prints the final state)
    spime cancel ORDER [--reason TEXT]
    spime orders [--all]
    spime rate ORDER --stars N [--role customer|maker|designer] [--criteria quality=5,...] [--comment TEXT]
"""

from __future__ import annotations

import argparse
import os
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict
from spimeforge.v1 import orders_pb2, orders_pb2_grpc

from hub.client.common import (
    EXIT_OK,
    ClientError,
    UsageError,
    add_hub_command,
    bounded_int,
    emit,
    log,
    split_ref,
)
from hub.client.connection import Hub, opened
from hub.localfiles import not_replaceable, replacing

__all__ = ["register"]

_STATE_NAMES = {v: k.removeprefix("ORDER_STATE_").lower() for k, v in orders_pb2.OrderState.items()}


def _doc(message: Any) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)  # type: ignore[no-any-return]


def _money(m: Any) -> str:
    return f"{m.minor_units / 100:.2f} {m.currency}" if m.currency else "-"


def _pairs(items: Sequence[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"{what} {item!r} is not NAME=VALUE")
        out[name] = value
    return out


def _spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("ref", metavar="DESIGN[@REV]", help="the design (and revision; default its head)")
    p.add_argument("--material", required=True, help="e.g. PLA, PETG")
    p.add_argument("--qty", type=bounded_int(1, 100), default=1, help="how many objects (1-100, default 1)")
    p.add_argument("--near", default="", metavar="LAT,LON", help="your location in decimal degrees")
    p.add_argument("--max-km", type=float, default=0.0, help="only nodes within this distance of --near")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="an OpenSCAD parameter")
    p.add_argument("--gift", action="store_true", help="a non-commercial gift or personal print (not paid)")


def _spec(args: argparse.Namespace) -> orders_pb2.OrderSpec:
    design, rev = split_ref(args.ref)
    return orders_pb2.OrderSpec(design=design, revision_id=rev, parameters=_pairs(args.param, "--param"),
                                material=args.material, quantity=args.qty, near=args.near,
                                paid=not args.gift, max_km=args.max_km)


def _stub(hub: Hub) -> orders_pb2_grpc.OrdersStub:
    return orders_pb2_grpc.OrdersStub(hub.channel)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the customer commands."""
    p = add_hub_command(subparsers, "quote", "quotes from nodes that can make a design now", _quote)
    _spec_args(p)
    p = add_hub_command(subparsers, "order", "order a design made: from a quote or the best by a rule", _order)
    _spec_args(p)
    p.add_argument("--quote", default="", metavar="ID", help="take an option of this quote (from spime quote)")
    p.add_argument("--option", type=bounded_int(0, 999), default=0,
                   help="which option of --quote (default 0, the cheapest)")
    p.add_argument("--best", choices=("cheapest", "fastest", "nearest"), default="cheapest",
                   help="how the hub chooses (default cheapest; it compares prices in one currency only and "
                        "refuses when the printers charge in several: then order a --quote's --option)")
    p.add_argument("--key", default="", help="idempotency key: repeating the command never orders twice")
    p.add_argument("--qr", type=Path, metavar="FILE", help="write a QR label PNG per object (FILE, FILE-2, ...)")
    p = add_hub_command(subparsers, "watch", "follow an order until it is final (progress on stderr)", _watch)
    p.add_argument("order")
    p = add_hub_command(subparsers, "cancel", "cancel an order (a running print is asked to stop)", _cancel)
    p.add_argument("order")
    p.add_argument("--reason", default="")
    p = add_hub_command(subparsers, "orders", "your orders, newest first", _orders)
    p.add_argument("--all", action="store_true", help="include delivered, failed and cancelled ones")
    p = add_hub_command(subparsers, "rate", "rate an order you took part in", _rate)
    p.add_argument("order")
    p.add_argument("--stars", type=bounded_int(1, 5), required=True, help="1-5")
    p.add_argument("--role", choices=("customer", "maker", "designer"), default="customer")
    p.add_argument("--criteria", default="", metavar="quality=5,printability=4,...")
    p.add_argument("--comment", default="")
    p.add_argument("--job", default="", help="rate one job of the order (default: the whole order)")


def _quote(args: argparse.Namespace) -> int:
    with opened(args) as hub:
        reply = hub.call(_stub(hub).Quote, orders_pb2.QuoteRequest(spec=_spec(args)), timeout=600)
    emit(args, _doc(reply), lambda _: _quote_text(reply))
    return EXIT_OK


def _quote_text(q: orders_pb2.QuoteResponse) -> str:
    if not q.fabricable:
        return f"no quote: {q.refusal}"
    lines = [f"quote {q.quote_id} (valid until {q.expires_at}), revision {q.revision_id[:12]}"]
    for o in q.options:
        where = f"{o.distance_km:.1f} km" if o.has_distance else "distance unknown"
        lines.append(f"  [{o.option}] {o.node}/{o.printer} ({o.printer_model}): {_money(o.price)}, "
                     f"{o.estimated_seconds / 3600:.1f} h, {o.filament_g:.1f} g, {where}, "
                     f"reputation {o.reputation:.1f} ({o.ratings}), start {o.earliest_start}; {o.correction}")
    lines += [f"  attribution: {a.notice}" for a in q.attributions]
    return "\n".join(lines)


def _order(args: argparse.Namespace) -> int:
    request = orders_pb2.PlaceOrderRequest(quote_id=args.quote, option=args.option, best=args.best,
                                           idempotency_key=args.key or secrets.token_hex(8))
    if not args.quote:
        request.spec.CopyFrom(_spec(args))
    if args.qr:
        _check_qr_path(args.qr)
    with opened(args) as hub:
        order = hub.call(_stub(hub).PlaceOrder, request, timeout=600)
    labels: list[str] = []
    failure = ""
    try:
        if args.qr:
            _write_qr(args.qr, order, labels)
    except (ClientError, OSError) as exc:  # the order is placed: show it before the failure
        failure = str(exc) if isinstance(exc, ClientError) else f"{exc.strerror or exc} ({exc.filename or ''})"
    doc = _doc(order)
    doc["qr_files"] = labels
    if failure:
        doc["qr_error"] = failure
    emit(args, doc, lambda _: _order_text(order) + "".join(f"\nQR label: {f}" for f in labels))
    if failure:
        raise ClientError(f"order {order.id} is placed, but its QR labels could not be written: {failure}; "
                          f"`spime watch {order.id}` shows them")
    return EXIT_OK


def _check_qr_path(path: Path) -> None:
    """Refuse a --qr path no label can be written to before the order is paid for.

    Raises:
        UsageError: ``path`` is a folder or another non-regular file, or its nearest existing
            folder is not a folder this user may write in.
    """
    if problem := not_replaceable(path):
        raise UsageError(f"--qr: {problem}")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:  # made by _write_qr
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"--qr {path}: cannot write into {folder} (not a folder you may write in)")


def _write_qr(path: Path, order: orders_pb2.Order, written: list[str]) -> None:
    """Write a label per object of ``order``, appending each file's name to ``written``.

    Raises:
        ClientError: a label's place is not a regular file.
        OSError: a label could not be written.
    """
    import qrcode
    from qrcode.image.pure import PyPNGImage

    for i, obj in enumerate(order.objects):
        target = path if i == 0 else path.with_name(f"{path.stem}-{i + 1}{path.suffix}")
        if problem := not_replaceable(target):
            raise ClientError(problem)
        target.parent.mkdir(parents=True, exist_ok=True)
        with replacing(target) as out:  # a pipe or a link there is replaced, never written through
            qrcode.make(obj.qr_payload, image_factory=PyPNGImage).save(out)
        written.append(str(target))


def _order_text(o: orders_pb2.Order) -> str:
    lines = [(f"order {o.id}: {_STATE_NAMES[o.state]}, {o.spec.quantity} x {o.spec.design} in {o.spec.material}, "
             f"{_money(o.price)} at {o.node or '-'}/{o.printer or '-'}")]
    if o.progress_percent:
        lines.append(f"  progress {o.progress_percent:.0f} %, layer {o.layer}")
    if o.failure_reason:
        lines.append(f"  {o.failure_reason}")
    if o.partial_cost.minor_units:
        lines.append(f"  partial cost {_money(o.partial_cost)}")
    lines += [f"  object {x.incarnation_id} ({x.state or 'placed'}): QR {x.qr_payload}" for x in o.objects]
    return "\n".join(lines)


def _watch(args: argparse.Namespace) -> int:
    last: orders_pb2.Order | None = None
    request = orders_pb2.GetOrderRequest(order_id=args.order)
    with opened(args) as hub, hub.errors(request):
        for order in _stub(hub).WatchOrder(request, metadata=hub.metadata):
            last = order
            log(f"{order.id}: {_STATE_NAMES[order.state]} {order.progress_percent:.0f} % layer {order.layer}")
    assert last is not None
    final = last
    emit(args, _doc(final), lambda _: _order_text(final))
    return EXIT_OK


def _simple(call: Callable[[Hub], Any], args: argparse.Namespace) -> int:
    with opened(args) as hub:
        order = call(hub)
    emit(args, _doc(order), lambda _: _order_text(order))
    return EXIT_OK


def _cancel(args: argparse.Namespace) -> int:
    return _simple(lambda hub: hub.call(_stub(hub).CancelOrder, orders_pb2.CancelOrderRequest(
        order_id=args.order, reason=args.reason)), args)


def _rate(args: argparse.Namespace) -> int:
    criteria = {k: _int(v, k) for k, v in _pairs([c for c in args.criteria.split(",") if c], "--criteria").items()}
    rating = orders_pb2.RateOrderRequest(order_id=args.order, job_id=args.job, rating={
        "role": args.role, "stars": args.stars, "criteria": criteria, "comment": args.comment})
    return _simple(lambda hub: hub.call(_stub(hub).RateOrder, rating), args)


def _int(text: str, name: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise UsageError(f"--criteria {name}={text[:40]!r}: give a whole number 1-5") from exc
    if not 1 <= value <= 5:  # a uint32 field: -3 or 2**32 would not even fit the request
        raise UsageError(f"--criteria {name}={text[:40]!r}: give a whole number 1-5")
    return value


def _orders(args: argparse.Namespace) -> int:
    found: list[orders_pb2.Order] = []
    token = ""
    with opened(args) as hub:
        while True:
            page = hub.call(_stub(hub).ListOrders, orders_pb2.ListOrdersRequest(
                include_final=args.all, page={"page_size": 200, "page_token": token}))
            found += page.orders
            token = page.next_page_token
            if not token:
                break
    emit(args, {"orders": [_doc(o) for o in found]},
         lambda _: "\n".join(_order_text(o) for o in found) or "no orders")
    return EXIT_OK
