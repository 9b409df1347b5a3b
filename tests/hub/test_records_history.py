"""The record of a design with a long history: bounded lists, figures over every row (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import threading
from typing import Any

import sqlalchemy as sa
from spimeforge.v1 import records_pb2

from hub import ratings as ratings_rules
from hub.store import record_sums, schema
from tests.hub.harness import InProcessHub, manifest_toml
from tests.hub.test_api_records import STL, _history

RATINGS, LEDGER_LINES, FABRICATIONS, LISTED = 260, 230, 240, 200


def _at(i: int) -> str:
    return f"2026-{1 + i // 500:02d}-{1 + i // 20 % 25:02d}T{i % 20:02d}:00:00Z"


def _fill(api: InProcessHub, revision: str) -> list[dict[str, Any]]:
    ratings = [{"design": "bracket", "order_id": f"o-{i // 3}", "job_id": "", "rater": ("carol", "bob", "alice")[i % 3],
                "role": ("customer", "maker", "designer")[i % 3], "stars": 1 + i * 7 % 5,
                "criteria": json.dumps({"quality": 1 + i % 5, **({"fit": 1 + i % 3} if i % 4 else {})}, sort_keys=True),
                "comment": f"c{i}", "at": _at(i)} for i in range(RATINGS)]
    with api.engine.begin() as conn:
        conn.execute(schema.jobs.insert(), [{"id": f"j-{i}", "design": "bracket", "revision_id": revision,
                                             "material": "PLA", "state": "done", "created_by": "alice",
                                             "created_at": _at(0), "updated_at": _at(0)} for i in range(FABRICATIONS)])
        conn.execute(schema.fabrications.insert(), [{
            "incarnation_id": f"i{i:08d}", "job_id": f"j-{i}", "lease_epoch": 1, "design": "bracket",
            "revision_id": revision, "node": "lab-1", "printer": "mk3", "printer_model": ("MK3S", "MINI")[i % 2],
            "material": "PLA", "settings": json.dumps({"layer_height_mm": "0.2"}), "estimated_seconds": 100,
            "actual_seconds": 90 + i % 20, "estimated_filament_g": 10.0, "actual_filament_g": 10.0 + i % 3,
            "outcome": "success" if i % 7 else "failed", "finished_at": _at(i)} for i in range(FABRICATIONS)])
        conn.execute(schema.ratings.insert(), ratings)
        conn.execute(schema.ledger_entries.insert(), [{
            "order_id": f"o-{i}", "design": "bracket", "recipient": "alice", "share": "design", "currency": "EUR",
            "minor_units": 100 + i, "equation_version": "1", "at": _at(i)} for i in range(LEDGER_LINES)])
        record_sums.rebuild(conn, "bracket")  # rows written around the writers: sum them as migration 0010 does
    return ratings


def test_a_long_record_lists_the_latest_rows_and_counts_every_one(any_api: InProcessHub) -> None:
    api = any_api
    ids = _history(api)
    ratings = _fill(api, ids["merged"])
    record = api.records.GetRecord(records_pb2.GetRecordRequest(design="bracket"), metadata=api.md("carol"))
    assert record.fabrication_count == FABRICATIONS and len(record.fabrications) == LISTED
    assert [f.incarnation_id for f in record.fabrications] == [f"i{i:08d}" for i in range(FABRICATIONS - LISTED,
                                                                                            FABRICATIONS)]
    assert sum(a.prints for a in record.aggregates) == FABRICATIONS
    assert [r.comment for r in record.ratings] == [f"c{i}" for i in range(RATINGS - LISTED, RATINGS)]
    assert [e.amount.minor_units for e in record.ledger] == [100 + i for i in range(LEDGER_LINES - LISTED,
                                                                                    LEDGER_LINES)]
    # the reputation rests on every customer's and maker's rating, not only the listed ones
    votes = [ratings_rules.Vote(int(r["stars"]), json.loads(str(r["criteria"]))) for r in ratings
             if r["role"] in ("customer", "maker")]
    expected = ratings_rules.reputation(votes)
    rep = record.design_reputation
    assert (rep.score, rep.mean, rep.count) == (expected.score, expected.mean, expected.count)
    assert dict(rep.criteria) == {k: v[0] for k, v in expected.criteria.items()} and set(rep.criteria) == {
        "fit", "quality"}
    people = {c.name: c for c in record.contributors}
    assert (people["alice"].revisions, people["bob"].accepted_proposals, record.revision_count) == (2, 1, 3)
    assert [(s.name, s.rung, s.contributions) for s in record.ladder] == [("bob", "co-create", 1)]


def test_reputation_of_totals_matches_the_votes() -> None:
    votes = [ratings_rules.Vote(5, {"quality": 4}), ratings_rules.Vote(2, {}), ratings_rules.Vote(4, {"quality": 1,
                                                                                                        "fit": 3})]
    assert ratings_rules.reputation_of_totals(3, 11, [("quality", 5, 2), ("fit", 3, 1)]) == ratings_rules.reputation(votes)
    assert ratings_rules.reputation_of_totals(0, 0, []) == ratings_rules.reputation([])


def test_the_record_takes_as_many_queries_for_a_long_history_as_for_a_short_one(any_api: InProcessHub) -> None:
    api = any_api
    ids = _history(api)
    statements: list[str] = []

    me = threading.get_ident()

    def seen(conn: object, cursor: object, statement: str, *_: object) -> None:
        if threading.get_ident() == me:  # not the hub's own timers
            statements.append(statement)

    def queries() -> int:
        statements.clear()
        sa.event.listen(api.engine, "before_cursor_execute", seen)
        try:
            api.composed.hub.records._thd_record("bracket")
        finally:
            sa.event.remove(api.engine, "before_cursor_execute", seen)
        return len(statements)

    short = queries()
    head = ids["merged"]
    for n in range(4):
        head = api.push("alice", "bracket", {"part.stl": STL * (5 + n)}, parents=(head,),
                        manifest=manifest_toml("bracket", license="CC-BY-4.0", files=("part.stl",),
                                               version=f"2.{n}.0")).revision_id
    _fill(api, head)
    assert queries() == short
