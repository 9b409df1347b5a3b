"""Alembic environment: runs against the engine the hub passes in (render_as_batch for SQLite)."""

from __future__ import annotations

from alembic import context

from hub.store.schema import metadata


def run_migrations_online() -> None:
    engine = context.config.attributes["engine"]
    with engine.connect().execution_options(sqlite_immediate=True) as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations_online()
