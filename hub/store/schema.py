"""Every table and index of the hub, on one MetaData (SQLAlchemy 2 Core).

Invariants live here: a revision's files reference stored blobs; one head per
design; a token is stored only as its SHA-256; one open claim per job
(later issues: jobs are leased with a fencing epoch). Times are RFC 3339 UTC
text, so SQLite and PostgreSQL sort and compare them the same way.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["metadata"]

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

_TIME = sa.String(32)
_HASH = sa.String(64)
_NAME = sa.String(64)

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("name", _NAME, primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("public_key", sa.String(64), nullable=False, server_default=""),
    sa.Column("created_at", _TIME, nullable=False),
    sa.CheckConstraint("role IN ('designer','operator','customer','admin','node')", name="role"),
)

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("token_sha256", _HASH, primary_key=True),
    sa.Column("account", _NAME, sa.ForeignKey("accounts.name", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("created_at", _TIME, nullable=False),
    sa.Column("revoked_at", _TIME, nullable=True),
)

blobs = sa.Table(
    "blobs",
    metadata,
    sa.Column("sha256", _HASH, primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created_at", _TIME, nullable=False),
)

designs = sa.Table(
    "designs",
    metadata,
    sa.Column("slug", _NAME, primary_key=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("license", sa.Text, nullable=False),
    sa.Column("head_revision_id", _HASH, nullable=True),
    sa.Column("created_by", _NAME, sa.ForeignKey("accounts.name"), nullable=False),
    sa.Column("created_at", _TIME, nullable=False),
    sa.Column("updated_at", _TIME, nullable=False),
    sa.Column("attributions", sa.Text, nullable=False, server_default="[]"),
    sa.Column("search_text", sa.Text, nullable=False, server_default=""),
    # " ID1 ID2 " of the licence expression, so a search by licence id matches whole ids only
    sa.Column("license_ids", sa.Text, nullable=False, server_default=""),
)

design_tags = sa.Table(
    "design_tags",
    metadata,
    sa.Column("design", _NAME, sa.ForeignKey("designs.slug", ondelete="CASCADE"), primary_key=True),
    sa.Column("tag", sa.String(40), primary_key=True, index=True),
)

maintainers = sa.Table(
    "maintainers",
    metadata,
    sa.Column("design", _NAME, sa.ForeignKey("designs.slug", ondelete="CASCADE"), primary_key=True),
    sa.Column("account", _NAME, sa.ForeignKey("accounts.name"), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("added_by", _NAME, nullable=False),
    sa.Column("added_at", _TIME, nullable=False),
)

revisions = sa.Table(
    "revisions",
    metadata,
    sa.Column("id", _HASH, primary_key=True),
    sa.Column("design", _NAME, sa.ForeignKey("designs.slug", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("manifest_toml", sa.Text, nullable=False),
    sa.Column("author", _NAME, sa.ForeignKey("accounts.name"), nullable=False),
    sa.Column("created_at", _TIME, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("signature", sa.LargeBinary, nullable=False),
    sa.Column("public_key", sa.LargeBinary, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("attributions", sa.Text, nullable=False, server_default="[]"),
    sa.Column("stored_at", _TIME, nullable=False),
    sa.CheckConstraint("kind IN ('push','fork','proposal')", name="kind"),
)

revision_parents = sa.Table(
    "revision_parents",
    metadata,
    sa.Column("revision_id", _HASH, sa.ForeignKey("revisions.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("parent_id", _HASH, nullable=False, index=True),
)

revision_files = sa.Table(
    "revision_files",
    metadata,
    sa.Column("revision_id", _HASH, sa.ForeignKey("revisions.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("path", sa.String(1024), primary_key=True),
    sa.Column("sha256", _HASH, sa.ForeignKey("blobs.sha256"), nullable=False, index=True),
    sa.Column("size", sa.BigInteger, nullable=False),
)

proposals = sa.Table(
    "proposals",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("design", _NAME, sa.ForeignKey("designs.slug", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("revision_id", _HASH, sa.ForeignKey("revisions.id"), nullable=False),
    sa.Column("base_revision_id", _HASH, nullable=False),
    sa.Column("author", _NAME, sa.ForeignKey("accounts.name"), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("decided_by", _NAME, nullable=False, server_default=""),
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", _TIME, nullable=False),
    sa.Column("decided_at", _TIME, nullable=False, server_default=""),
    sa.CheckConstraint("state IN ('open','accepted','declined')", name="state"),
)

printability_reports = sa.Table(
    "printability_reports",
    metadata,
    sa.Column("revision_id", _HASH, sa.ForeignKey("revisions.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("path", sa.String(1024), primary_key=True),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("report", sa.Text, nullable=False),
)

# -- the community record of later issues: orders, jobs, fabrications, ratings, ledger --------

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("customer", _NAME, sa.ForeignKey("accounts.name"), nullable=False, index=True),
    sa.Column("design", _NAME, sa.ForeignKey("designs.slug"), nullable=False, index=True),
    sa.Column("revision_id", _HASH, nullable=False),
    sa.Column("parameters", sa.Text, nullable=False, server_default="{}"),
    sa.Column("material", sa.String(32), nullable=False, server_default=""),
    sa.Column("quantity", sa.Integer, nullable=False, server_default="1"),
    sa.Column("paid", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("price_currency", sa.String(3), nullable=False, server_default=""),
    sa.Column("price_minor", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("state", sa.String(24), nullable=False),
    sa.Column("created_at", _TIME, nullable=False),
    sa.Column("updated_at", _TIME, nullable=False),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("order_id", sa.String(32), sa.ForeignKey("orders.id"), nullable=False, index=True),
    sa.Column("state", sa.String(24), nullable=False, index=True),
    sa.Column("node", _NAME, nullable=True),
    sa.Column("printer", _NAME, nullable=True),
    sa.Column("lease_owner", _NAME, nullable=True),
    sa.Column("lease_epoch", sa.Integer, nullable=False, server_default="0"),
    sa.Column("lease_expires_at", _TIME, nullable=True),
    sa.Column("created_at", _TIME, nullable=False),
    sa.Column("updated_at", _TIME, nullable=False),
)

fabrications = sa.Table(
    "fabrications",
    metadata,
    sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id"), primary_key=True),
    sa.Column("order_id", sa.String(32), nullable=False),
    sa.Column("design", _NAME, nullable=False, index=True),
    sa.Column("revision_id", _HASH, nullable=False),
    sa.Column("node", _NAME, nullable=False),
    sa.Column("printer", _NAME, nullable=False),
    sa.Column("material", sa.String(32), nullable=False),
    sa.Column("settings", sa.Text, nullable=False, server_default="{}"),
    sa.Column("estimated_seconds", sa.Integer, nullable=False, server_default="0"),
    sa.Column("actual_seconds", sa.Integer, nullable=False, server_default="0"),
    sa.Column("estimated_filament_g", sa.Float, nullable=False, server_default="0"),
    sa.Column("actual_filament_g", sa.Float, nullable=False, server_default="0"),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("failure_reason", sa.Text, nullable=False, server_default=""),
    sa.Column("finished_at", _TIME, nullable=False),
)

ratings = sa.Table(
    "ratings",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("design", _NAME, nullable=False, index=True),
    sa.Column("order_id", sa.String(32), nullable=True),
    sa.Column("rater", _NAME, nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("stars", sa.Integer, nullable=False),
    sa.Column("criteria", sa.Text, nullable=False, server_default="{}"),
    sa.Column("comment", sa.Text, nullable=False, server_default=""),
    sa.Column("at", _TIME, nullable=False),
    sa.CheckConstraint("stars BETWEEN 1 AND 5", name="stars"),
)

ledger_entries = sa.Table(
    "ledger_entries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("order_id", sa.String(32), nullable=False, index=True),
    sa.Column("design", _NAME, nullable=False, index=True),
    sa.Column("recipient", _NAME, nullable=False),
    sa.Column("share", sa.String(16), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("minor_units", sa.BigInteger, nullable=False),
    sa.Column("equation_version", sa.String(16), nullable=False),
    sa.Column("at", _TIME, nullable=False),
)
