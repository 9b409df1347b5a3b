"""Conversions of the order service: stored quote options, page tokens, attribution bundles. Pure."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence

from hub import quotes
from hub.domain import Attribution, Design, Revision
from hub.errors import InvalidArgument
from hub.manifest import Manifest, parse_manifest

__all__ = ["attribution_dict", "attributions", "decode_token", "encode_token", "option_from_json", "option_json"]


def option_json(o: quotes.QuoteOption) -> dict[str, object]:
    return {"node": o.node, "printer": o.printer, "model": o.printer_model, "currency": o.price.currency,
            "material": o.price.material_minor, "machine": o.price.machine_minor, "fees": o.price.fees_minor,
            "contribution": o.price.contribution_minor,
            "seconds": o.estimated_seconds, "grams": o.filament_g, "km": o.distance_km, "rep": o.reputation,
            "ratings": o.ratings, "start": o.earliest_start, "tf": o.correction.time_factor,
            "ff": o.correction.filament_factor, "prints": o.correction.prints, "note": o.correction.note,
            "weights": [list(w) for w in o.part_weights]}


def option_from_json(d: Mapping[str, object]) -> quotes.QuoteOption:
    price = quotes.Price(str(d["currency"]), int(d["material"]), int(d["machine"]), int(d["fees"]),  # type: ignore[call-overload]
                         int(d["contribution"]))  # type: ignore[call-overload]
    fix = quotes.Correction(float(d["tf"]), float(d["ff"]), int(d["prints"]), str(d["note"]))  # type: ignore[arg-type,call-overload]
    km = d["km"]
    # a quote stored before the weights were kept has none: its objects weigh the same
    weights = tuple((str(part), int(w)) for part, w in d.get("weights", ()))  # type: ignore[attr-defined]
    return quotes.QuoteOption(str(d["node"]), str(d["printer"]), str(d["model"]), price, int(d["seconds"]),  # type: ignore[call-overload]
                              float(d["grams"]), None if km is None else float(km), float(d["rep"]),  # type: ignore[arg-type]
                              int(d["ratings"]), str(d["start"]), fix, weights)  # type: ignore[call-overload]


def encode_token(order_id: str) -> str:
    return base64.urlsafe_b64encode(order_id.encode()).decode().rstrip("=")


def decode_token(token: str) -> str:
    if not token:
        return ""
    try:
        value = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument("page_token is not one this hub handed out") from exc
    if len(value) > 32 or not value.isalnum():
        raise InvalidArgument("page_token is not one this hub handed out")
    return value


def attribution_dict(a: Attribution) -> dict[str, object]:
    return {"design": a.design, "revision_id": a.revision_id, "title": a.title, "license": a.license,
            "licensor": a.licensor, "contributors": list(a.contributors), "notice": a.notice}


def attributions(design: Design, revision: Revision, notices: Sequence[str],
                 manifest: Manifest | None = None) -> tuple[Attribution, ...]:
    """The attribution bundle of an order; ``manifest`` is the revision's, when the caller parsed it already."""
    manifest = manifest or parse_manifest(revision.manifest_toml)
    contributors = tuple(dict.fromkeys((revision.author, *manifest.contributors)))
    notice = f"“{manifest.title}” by {manifest.licensor}, {manifest.license}; " + " ".join(notices)
    own = Attribution(design.slug, revision.id, manifest.title, manifest.license, manifest.licensor, contributors,
                      notice.strip()[:2000])
    return (own, *design.attributions)
