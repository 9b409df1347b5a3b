"""Alembic migrations of the hub schema (a package so wheels ship them)."""
