"""A design's grants on record are bounded where it matters: the order-time licence gate reads only the
grants that cover the order (filtered in SQL), and a design has at most MAX_LIVE_GRANTS grants in force.
SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import sqlalchemy as sa
from spimeforge.v1 import orders_pb2, orders_pb2_grpc

from hub import limits
from hub.store import schema
from tests.hub.grant_signing import now_text, registered_key, signed_grant
from tests.hub.harness import InProcessHub, manifest_toml
from tests.hub.refusal import refused
from tests.hub.test_grant_revocation import revocation

STL = b"solid s\nendsolid s\n"
g = schema.grants


def _nc_design(api: InProcessHub, name: str = "nc-cube") -> str:
    manifest = manifest_toml(name, license="CC-BY-NC-4.0", files=("part.stl",))
    return str(api.push("alice", name, {"part.stl": STL}, manifest=manifest, create=True).revision_id)


def _copies(api: InProcessHub, count: int, **changes: str) -> None:
    """``count`` copies of the design's first grant row with ``changes`` (unique ids and statement hashes)."""
    with api.engine.begin() as conn:
        row = dict(conn.execute(sa.select(g).order_by(g.c.granted_at).limit(1)).one()._mapping)
        start = conn.execute(sa.select(sa.func.count()).select_from(g)).scalar_one()
        conn.execute(g.insert(), [{**row, **changes, "id": f"c{start + i:015x}", "statement_sha256": f"{start + i:064x}"}
                                  for i in range(count)])


@contextmanager
def _rows_read(engine: sa.Engine) -> Iterator[list[int]]:
    """The number of rows each SELECT run on ``engine`` meanwhile returns (each run again to count them)."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    counts: list[int] = []
    sa.event.listen(engine, "after_cursor_execute", record)
    try:
        yield counts
    finally:
        sa.event.remove(engine, "after_cursor_execute", record)
    with engine.connect() as conn:
        counts.extend(len(conn.exec_driver_sql(statement, parameters).fetchall()) for statement, parameters in seen)


def test_the_order_gate_reads_only_the_grants_that_cover_the_order(any_api: InProcessHub) -> None:
    """The gate read every live grant of the design and filtered in Python: its work grew with the table."""
    api = any_api
    revision = _nc_design(api)
    _nc_design(api, "other")
    key = registered_key(api, "alice")
    stub = orders_pb2_grpc.OrdersStub(api.channel)
    covering = stub.Grant(signed_grant(key, "alice", "nc-cube", node="lab-1"), metadata=api.md("alice"))
    # on record besides: grants of another scope or revision, ended, revoked, of another design
    _copies(api, 400, scope="modified")
    _copies(api, 400, revision_id="f" * 64)
    _copies(api, 400, until="2020-01-01T23:59:59Z")
    _copies(api, 400, revoked_at="2021-01-01T00:00:00Z")
    _copies(api, 400, design="other")
    gate = api.composed.hub.orders.grants  # type: ignore[union-attr]
    design = gate.designs._thd_get_design("nc-cube")
    with _rows_read(api.engine) as counts:
        found = gate._thd_gate(design, revision, True, False)
    assert found.nodes == frozenset({"lab-1"}) and covering.id in found.rule
    assert sum(counts) <= 2, f"the gate read {counts} rows for one covering grant"
    # a grant for any node covers every node
    stub.Grant(signed_grant(key, "alice", "nc-cube", scope="any", revision_id=revision), metadata=api.md("alice"))
    assert gate._thd_gate(design, revision, True, False).nodes is None


def test_a_design_has_at_most_max_live_grants_in_force(any_api: InProcessHub) -> None:
    api = any_api
    _nc_design(api)
    key = registered_key(api, "alice")
    stub = orders_pb2_grpc.OrdersStub(api.channel)
    stub.Grant(signed_grant(key, "alice", "nc-cube", node="lab-0"), metadata=api.md("alice"))
    _copies(api, limits.MAX_LIVE_GRANTS - 1)
    # ended and revoked grants stay on record and do not count
    _copies(api, 50, until="2020-01-01T23:59:59Z")
    _copies(api, 50, revoked_at="2021-01-01T00:00:00Z")
    one_more = signed_grant(key, "alice", "nc-cube", node="lab-1")
    refusal = refused(api, lambda: stub.Grant(one_more, metadata=api.md("alice")), grpc.StatusCode.RESOURCE_EXHAUSTED,
                      "GRANT_LIMIT", "limit live grants per design", str(limits.MAX_LIVE_GRANTS), "revoke")
    assert refusal.retry is None  # retrying the same call does not help; revoking one does
    with api.engine.begin() as conn:  # one ends
        conn.execute(g.update().where(g.c.id == sa.select(sa.func.min(g.c.id)).where(
            g.c.revoked_at == "", g.c.until > now_text()).scalar_subquery()).values(until="2020-06-01T00:00:00Z"))
    first = stub.Grant(one_more, metadata=api.md("alice"))
    assert first.node == "lab-1"
    # full again; revoking one makes room
    two_more = signed_grant(key, "alice", "nc-cube", node="lab-2")
    refused(api, lambda: stub.Grant(two_more, metadata=api.md("alice")), grpc.StatusCode.RESOURCE_EXHAUSTED,
            "GRANT_LIMIT")
    stub.RevokeGrant(revocation(key, "alice", first), metadata=api.md("alice"))
    assert stub.Grant(two_more, metadata=api.md("alice")).node == "lab-2"
    # a design's cap is its own: another design grants freely
    _nc_design(api, "other")
    assert stub.Grant(signed_grant(key, "alice", "other"), metadata=api.md("alice")).design == "other"
    listed = stub.ListGrants(orders_pb2.ListGrantsRequest(design="nc-cube"), metadata=api.md("carol"))
    assert listed.next_page_token  # the refused grant left the record as it was; the allowed ones are on it
