"""The record's running sums: kept by the writers, equal to a recount of the rows (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import command
from spimeforge.v1 import nodes_pb2, records_pb2

from hub import ratings as ratings_rules
from hub.jobs import JobSpec
from hub.orders import RatingRow
from hub.store import record_sums, schema
from hub.store.engine import _alembic_config
from hub.store.orders import OrderStore
from tests.hub.fake_agent import FakeAgent, printer
from tests.hub.harness import InProcessHub
from tests.hub.test_api_records import _history
from tests.hub.test_records_history import _fill

SUMS = (schema.record_print_stats, schema.record_print_settings, schema.record_votes)


def _sums(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every running sum, floats to 9 places (a running sum and a recount add in another order)."""
    with engine.connect() as conn:
        return {t.name: sorted(tuple(round(v, 9) if isinstance(v, float) else v for v in row)
                               for row in conn.execute(sa.select(t))) for t in SUMS}


def _recounted(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.begin() as conn:
        record_sums.rebuild(conn)
    return _sums(engine)


def _print(api: InProcessHub, agent: FakeAgent, revision: str, outcome: dict[str, str]) -> None:
    api.composed.hub.jobs._thd_create_job(JobSpec("bracket", revision, "PLA"), "admin")
    job_id, epoch = agent.take_job()
    agent.run_to_printed(job_id, epoch, "mk3s")
    agent.acked(agent.event(job_id, epoch, nodes_pb2.EVENT_KIND_OUTCOME, outcome))


def _rate(store: OrderStore, order: str, rater: str, role: str, stars: int, criteria: dict[str, int]) -> None:
    store._thd_put_rating(RatingRow(order, "", "bracket", "lab-1", rater, role, stars, criteria, "", "2026-02-01T00:00:00Z"))


def test_fabrications_and_ratings_move_the_sums_as_a_recount_finds_them(any_api: InProcessHub) -> None:
    api = any_api
    ids = _history(api)
    agent = FakeAgent.enrolled(api, "lab-1", [printer("mk3s")])
    agent.connect()
    _print(api, agent, ids["merged"], {"outcome": "success"})
    _print(api, agent, ids["merged"], {"outcome": "failed", "reason": "spaghetti"})
    agent.close()
    store = OrderStore(api.engine)
    _rate(store, "o-1", "carol", "customer", 5, {"quality": 4})
    _rate(store, "o-1", "bob", "maker", 3, {"printability": 2})
    _rate(store, "o-1", "alice", "designer", 4, {"fairness": 5})  # not a vote on the design
    _rate(store, "o-1", "carol", "customer", 2, {"quality": 1, "fairness": 3})  # replaces carol's first
    kept = _sums(api.engine)
    assert kept == _recounted(api.engine)
    record = api.records.GetRecord(records_pb2.GetRecordRequest(design="bracket"), metadata=api.md("carol"))
    [aggregate] = record.aggregates
    assert (record.fabrication_count, aggregate.prints, aggregate.successes) == (2, 2, 1)
    assert aggregate.mean_time_error == round((640 - 600) / 600, 4)
    expected = ratings_rules.reputation([ratings_rules.Vote(2, {"quality": 1, "fairness": 3}),
                                         ratings_rules.Vote(3, {"printability": 2})])
    rep = record.design_reputation
    assert (rep.score, rep.mean, rep.count) == (expected.score, expected.mean, expected.count) and rep.count == 2
    assert dict(rep.criteria) == {k: v[0] for k, v in expected.criteria.items()}


def test_migration_0010_backfills_the_sums_of_rows_stored_before_it(any_api: InProcessHub) -> None:
    api = any_api
    ids = _history(api)
    _fill(api, ids["merged"])  # raw rows, summed by record_sums.rebuild
    before = _sums(api.engine)
    assert before["record_print_stats"] and before["record_votes"]
    config = _alembic_config(api.engine)
    command.downgrade(config, "0009")
    command.upgrade(config, "head")
    assert _sums(api.engine) == before
