"""Prebuilt statements run on the driver's cursor (hub.store.driver.Prepared) answer as Connection.execute
does, on SQLite and PostgreSQL: the same rows and types, the columns not given keep their defaults, the
caller's transaction holds them, and a refused statement raises SQLAlchemy's error."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from hub.store import schema
from hub.store.driver import Prepared
from hub.store.engine import connect, write

NOW = "2026-12-01T05:00:00Z"
BOX = {"build_x_mm": 250.0, "build_y_mm": 210.0, "build_z_mm": 200.0}
n, pr = schema.nodes, schema.printers
INSERT_NODE = Prepared(sa.insert(n))
INSERT_PRINTER = Prepared(sa.insert(pr))
PRINTERS_OF = Prepared(sa.select(pr.c.node, pr.c.printer, pr.c.bed_clear, pr.c.accepting, pr.c.nozzle_mm, pr.c.phase)
                       .where(pr.c.node == sa.bindparam("node")).order_by(pr.c.printer))
NAMED = Prepared(sa.select(n.c.name, sa.func.count()).where(n.c.name.in_(sa.bindparam("names", expanding=True)))
                 .group_by(n.c.name).order_by(n.c.name))
CLEAR = Prepared(sa.update(pr).where(pr.c.node == sa.bindparam("node"), pr.c.phase == "idle").values(bed_clear=True))


def _node(conn: sa.Connection, name: str) -> None:
    conn.execute(sa.insert(schema.accounts).values(name=name, role="node", created_at=NOW))
    INSERT_NODE.count(conn, {"name": name, "created_at": NOW})


def test_rows_are_those_of_connection_execute_with_their_types(engine: sa.Engine) -> None:
    with write(engine) as conn:
        _node(conn, "lab-1")
        INSERT_PRINTER.many(conn, [{"node": "lab-1", "printer": p, "model": "MK3S", "bed_clear": clear, **BOX,
                                    "phase": "offline", "updated_at": NOW} for p, clear in (("a", True), ("b", False))])
    with connect(engine) as conn:
        fast = PRINTERS_OF.rows(conn, {"node": "lab-1"})
        slow = conn.execute(PRINTERS_OF.statement, {"node": "lab-1"}).all()
    assert fast == [tuple(r) for r in slow]
    assert [(r.printer, r.bed_clear, r.phase) for r in fast] == [("a", True, "offline"), ("b", False, "offline")]
    assert all(type(r.bed_clear) is bool and type(r.nozzle_mm) is float for r in fast)  # 0/1 and 0 on SQLite
    assert [(r.accepting, r.nozzle_mm) for r in fast] == [(False, 0.4)] * 2  # columns not given keep their defaults


def test_counts_scalars_and_in_lists(engine: sa.Engine) -> None:
    with write(engine) as conn:
        for name in ("lab-1", "lab-2", "lab-3"):
            _node(conn, name)
        INSERT_PRINTER.many(conn, [{"node": "lab-1", "printer": p, "phase": phase, "bed_clear": False, **BOX,
                                    "updated_at": NOW} for p, phase in (("a", "idle"), ("b", "printing"))])
        assert CLEAR.count(conn, {"node": "lab-1"}) == 1
        assert CLEAR.count(conn, {"node": "lab-9"}) == 0
        assert [tuple(r) for r in NAMED.rows(conn, {"names": ["lab-3", "lab-1", "nope"]})] == [("lab-1", 1), ("lab-3", 1)]
        assert Prepared(sa.select(sa.func.count()).select_from(n)).scalar(conn) == 3
        assert PRINTERS_OF.first(conn, {"node": "lab-9"}) is None


def test_it_runs_in_the_callers_transaction(engine: sa.Engine) -> None:
    with pytest.raises(RuntimeError), write(engine) as conn:
        _node(conn, "lab-1")
        assert Prepared(sa.select(sa.func.count()).select_from(n)).scalar(conn) == 1
        raise RuntimeError("roll back")
    with connect(engine) as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(n)).scalar() == 0


def test_a_refused_statement_raises_sqlalchemys_error_and_changes_nothing(engine: sa.Engine) -> None:
    with write(engine) as conn:
        _node(conn, "lab-1")
    with pytest.raises(sa.exc.IntegrityError), write(engine) as conn:
        _node(conn, "lab-2")
        INSERT_NODE.count(conn, {"name": "lab-1", "created_at": NOW})  # its account exists: the node is twice
    with pytest.raises(sa.exc.IntegrityError), write(engine) as conn:
        INSERT_PRINTER.many(conn, [{"node": "lab-1", "printer": "a", "phase": "idle", **BOX, "updated_at": NOW}] * 2)
    with connect(engine) as conn:
        assert conn.execute(sa.select(n.c.name)).scalars().all() == ["lab-1"]
        assert conn.execute(sa.select(sa.func.count()).select_from(pr)).scalar() == 0
