"""Every table and index of the hub, on one MetaData (SQLAlchemy 2 Core).

Invariants live here: a revision's files reference stored blobs; one head per
design; a token is stored only as its SHA-256; one open claim per job
(later issues: jobs are leased with a fencing epoch). Times are RFC 3339 UTC
text, so SQLite and PostgreSQL sort and compare them the same way.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["MAX_DRAIN_REASON", "metadata"]

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
# a manifest part's name, as long as a manifest allows: text on PostgreSQL (migration 0013); SQLite keeps
# any length in the VARCHAR(128) it was created with
_PART = sa.String(128).with_variant(sa.Text(), "postgresql")
_NAME = sa.String(64)
MAX_DRAIN_REASON = 200  # characters of why a node was drained

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

# A public key registered to an account (issue 10 §4): registered_at <= t < revoked_at is when a
# signature by it counts; hub_signature is the hub key's signature over the row (hub.keys).
account_keys = sa.Table(
    "account_keys",
    metadata,
    sa.Column("public_key", _HASH, primary_key=True),  # raw Ed25519 key, lowercase hex
    sa.Column("account", _NAME, sa.ForeignKey("accounts.name", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("fingerprint", sa.String(32), nullable=False, unique=True),
    sa.Column("registered_at", _TIME, nullable=False),
    sa.Column("revoked_at", _TIME, nullable=True),
    sa.Column("hub_signature", sa.String(128), nullable=False),
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
    # issue 8: where and how it is made, what it cost, why it ended
    sa.Column("quote_id", sa.String(32), nullable=False, server_default=""),
    sa.Column("rule", sa.String(16), nullable=False, server_default=""),
    sa.Column("node", _NAME, nullable=False, server_default=""),
    sa.Column("printer", _NAME, nullable=False, server_default=""),
    sa.Column("near", sa.String(64), nullable=False, server_default=""),
    sa.Column("material_minor", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("machine_minor", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("fees_minor", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("estimated_seconds", sa.Integer, nullable=False, server_default="0"),
    sa.Column("attributions", sa.Text, nullable=False, server_default="[]"),
    sa.Column("failure_reason", sa.Text, nullable=False, server_default=""),
    sa.Column("partial_cost_minor", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("settled", sa.Boolean, nullable=False, server_default=sa.false()),
)

# -- node agents and the job lifecycle (issue 7) -----------------------------------------------

nodes = sa.Table(
    "nodes",
    metadata,
    sa.Column("name", _NAME, sa.ForeignKey("accounts.name", ondelete="CASCADE"), primary_key=True),
    sa.Column("session_epoch", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("online", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("agent_version", sa.String(64), nullable=False, server_default=""),
    sa.Column("location", sa.String(128), nullable=False, server_default=""),
    sa.Column("latitude", sa.Float, nullable=True),
    sa.Column("longitude", sa.Float, nullable=True),
    # highest agent_seq committed (Welcome.last_agent_seq_committed)
    sa.Column("last_agent_seq", sa.BigInteger, nullable=False, server_default="0"),
    # last hub_seq allocated to a command for this node, and the agent's cumulative ack
    sa.Column("hub_seq", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("hub_seq_acked", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("last_seen", _TIME, nullable=False, server_default=""),
    sa.Column("disconnected_at", _TIME, nullable=False, server_default=""),
    sa.Column("created_at", _TIME, nullable=False),
    # the hub replica holding the node's session ("" = none); see hub_replicas (issue 9)
    sa.Column("replica", _NAME, nullable=False, server_default=""),
    # why a hub admin drained the node ("" = not drained): no new job is routed to it (`spime-hub node drain`)
    sa.Column("drained", sa.String(MAX_DRAIN_REASON), nullable=False, server_default=""),
    sa.Column("drained_at", _TIME, nullable=False, server_default=""),
)

# Hub replicas on one database heartbeat their row; a replica whose lease expired is dead and
# the sessions it held are released by the others (issue 9).
hub_replicas = sa.Table(
    "hub_replicas",
    metadata,
    sa.Column("replica", _NAME, primary_key=True),
    sa.Column("started_at", _TIME, nullable=False),
    sa.Column("expires_at", _TIME, nullable=False),
)

enrollment_tokens = sa.Table(
    "enrollment_tokens",
    metadata,
    sa.Column("token_sha256", _HASH, primary_key=True),
    sa.Column("node", _NAME, sa.ForeignKey("nodes.name", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("created_at", _TIME, nullable=False),
    sa.Column("expires_at", _TIME, nullable=False),
    sa.Column("used_at", _TIME, nullable=False, server_default=""),
)

printers = sa.Table(
    "printers",
    metadata,
    sa.Column("node", _NAME, sa.ForeignKey("nodes.name", ondelete="CASCADE"), primary_key=True),
    sa.Column("printer", _NAME, primary_key=True),
    sa.Column("model", sa.String(64), nullable=False, server_default=""),
    sa.Column("build_x_mm", sa.Float, nullable=False),
    sa.Column("build_y_mm", sa.Float, nullable=False),
    sa.Column("build_z_mm", sa.Float, nullable=False),
    sa.Column("nozzle_mm", sa.Float, nullable=False, server_default="0.4"),
    sa.Column("materials", sa.Text, nullable=False, server_default="[]"),
    sa.Column("loaded_color", sa.String(64), nullable=False, server_default=""),
    sa.Column("phase", sa.String(16), nullable=False),
    sa.Column("bed_clear", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("accepting", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("hour_currency", sa.String(3), nullable=False, server_default=""),
    sa.Column("hour_minor", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("gram_currency", sa.String(3), nullable=False, server_default=""),
    sa.Column("gram_minor", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("slicer_profile", sa.String(64), nullable=False, server_default=""),
    sa.Column("updated_at", _TIME, nullable=False),
)

# The hub -> agent outbox: a command stays until the agent acks its hub_seq.
node_commands = sa.Table(
    "node_commands",
    metadata,
    sa.Column("node", _NAME, sa.ForeignKey("nodes.name", ondelete="CASCADE"), primary_key=True),
    sa.Column("hub_seq", sa.BigInteger, primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("job_id", sa.String(32), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", _TIME, nullable=False),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("order_id", sa.String(32), sa.ForeignKey("orders.id"), nullable=True, index=True),
    sa.Column("design", _NAME, sa.ForeignKey("designs.slug"), nullable=False, index=True),
    sa.Column("revision_id", _HASH, nullable=False),
    sa.Column("material", sa.String(32), nullable=False),
    sa.Column("parameters", sa.Text, nullable=False, server_default="{}"),
    sa.Column("state", sa.String(24), nullable=False, index=True),
    sa.Column("want_node", _NAME, nullable=True),
    sa.Column("want_printer", _NAME, nullable=True),
    sa.Column("node", _NAME, nullable=True, index=True),
    sa.Column("printer", _NAME, nullable=True),
    # the fencing token: bumped on every (re)assignment and requeue
    sa.Column("lease_epoch", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("offer_id", sa.String(32), nullable=False, server_default=""),
    sa.Column("offer_expires_at", _TIME, nullable=False, server_default=""),
    sa.Column("tried_nodes", sa.Text, nullable=False, server_default="[]"),
    # when a node last declined (or let expire) an offer: tried_nodes are forgotten a while after
    sa.Column("tried_at", _TIME, nullable=False, server_default=""),
    # the manifest part ([[parts]] name) this job makes; "" = the whole design
    sa.Column("part", _PART, nullable=False, server_default=""),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("paid", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("payout_currency", sa.String(3), nullable=False, server_default=""),
    sa.Column("payout_minor", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("estimated_seconds", sa.Integer, nullable=False, server_default="0"),
    sa.Column("progress", sa.Float, nullable=False, server_default="0"),
    sa.Column("layer", sa.Integer, nullable=False, server_default="0"),
    sa.Column("production", sa.Text, nullable=False, server_default="{}"),
    sa.Column("failure_reason", sa.Text, nullable=False, server_default=""),
    sa.Column("created_by", _NAME, nullable=False),
    sa.Column("started_at", _TIME, nullable=False, server_default=""),
    sa.Column("lost_at", _TIME, nullable=False, server_default=""),
    sa.Column("created_at", _TIME, nullable=False),
    sa.Column("updated_at", _TIME, nullable=False),
)

# Every report of every agent, applied or not: (node, agent_seq) is the idempotency key.
job_events = sa.Table(
    "job_events",
    metadata,
    sa.Column("node", _NAME, sa.ForeignKey("nodes.name", ondelete="CASCADE"), primary_key=True),
    sa.Column("agent_seq", sa.BigInteger, primary_key=True),
    sa.Column("job_id", sa.String(32), nullable=False, index=True),
    sa.Column("lease_epoch", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(24), nullable=False),
    sa.Column("at", _TIME, nullable=False),
    sa.Column("data", sa.Text, nullable=False, server_default="{}"),
    sa.Column("applied", sa.Boolean, nullable=False),
    sa.Column("note", sa.Text, nullable=False, server_default=""),
    sa.Column("received_at", _TIME, nullable=False),
)

fabrications = sa.Table(
    "fabrications",
    metadata,
    sa.Column("incarnation_id", sa.String(16), primary_key=True),
    sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id"), nullable=False),
    sa.Column("lease_epoch", sa.BigInteger, nullable=False),
    sa.Column("order_id", sa.String(32), nullable=True),
    sa.Column("design", _NAME, nullable=False, index=True),
    sa.Column("revision_id", _HASH, nullable=False),
    sa.Column("parameters", sa.Text, nullable=False, server_default="{}"),
    sa.Column("node", _NAME, nullable=False),
    sa.Column("printer", _NAME, nullable=False),
    sa.Column("printer_model", sa.String(64), nullable=False, server_default=""),
    sa.Column("material", sa.String(32), nullable=False),
    sa.Column("slicer", sa.String(64), nullable=False, server_default=""),
    sa.Column("slicer_version", sa.String(64), nullable=False, server_default=""),
    sa.Column("slicer_profile", sa.String(64), nullable=False, server_default=""),
    sa.Column("settings", sa.Text, nullable=False, server_default="{}"),
    sa.Column("estimated_seconds", sa.Integer, nullable=False, server_default="0"),
    sa.Column("actual_seconds", sa.Integer, nullable=False, server_default="0"),
    sa.Column("estimated_filament_mm", sa.Float, nullable=False, server_default="0"),
    sa.Column("estimated_filament_g", sa.Float, nullable=False, server_default="0"),
    sa.Column("actual_filament_mm", sa.Float, nullable=False, server_default="0"),
    sa.Column("actual_filament_g", sa.Float, nullable=False, server_default="0"),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("failure_reason", sa.Text, nullable=False, server_default=""),
    sa.Column("operator_notes", sa.Text, nullable=False, server_default=""),
    sa.Column("resends", sa.Integer, nullable=False, server_default="0"),
    sa.Column("findings", sa.Text, nullable=False, server_default="[]"),
    sa.Column("started_at", _TIME, nullable=False, server_default=""),
    sa.Column("finished_at", _TIME, nullable=False),
    # exactly once per job epoch
    sa.UniqueConstraint("job_id", "lease_epoch", name="uq_fabrications_job_epoch"),
    sa.CheckConstraint("outcome IN ('success','failed','cancelled','interrupted')", name="outcome"),
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
    # issue 8: one per person per job per role; job_id "" = the whole order
    sa.Column("job_id", sa.String(32), nullable=False, server_default=""),
    sa.Column("node", _NAME, nullable=False, server_default=""),
    sa.CheckConstraint("stars BETWEEN 1 AND 5", name="stars"),
    sa.UniqueConstraint("order_id", "job_id", "rater", "role", name="uq_ratings_order_job_rater_role"),
)
sa.Index("ix_ratings_node", ratings.c.node)

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
    # issue 8: why this share, and the value equation it was computed with (JSON snapshot)
    sa.Column("explanation", sa.Text, nullable=False, server_default=""),
    sa.Column("equation", sa.Text, nullable=False, server_default="{}"),
)
sa.Index("ix_ledger_entries_recipient", ledger_entries.c.recipient)
# issue 8: the record lists a design's latest fabrications
sa.Index("ix_fabrications_design_finished_at", fabrications.c.design, fabrications.c.finished_at)
# issue 8: orders within --max-km match the nodes in a latitude/longitude box first
sa.Index("ix_nodes_latitude_longitude", nodes.c.latitude, nodes.c.longitude)
# issue 8: a quote corrects each candidate node's estimate from its latest prints of a model and material
sa.Index("ix_fabrications_node_model_material", fabrications.c.node, fabrications.c.printer_model,
         fabrications.c.material, fabrications.c.finished_at)
# issue 8: the record lists a design's latest ratings and ledger lines and walks its revisions in order
sa.Index("ix_ratings_design_at", ratings.c.design, ratings.c.at, ratings.c.id)
sa.Index("ix_ledger_entries_design_at", ledger_entries.c.design, ledger_entries.c.at, ledger_entries.c.id)
# issue 8 (migration 0010): ... and counts its authors and finds its parents from the index alone
sa.Index("ix_revisions_design_history", revisions.c.design, revisions.c.seq, revisions.c.id, revisions.c.kind,
         revisions.c.author)
# issue 8: an order's matching skips the printers holding a job and finds the slicer profiles in use.
# The states of hub.jobs.HELD, spelled out: a query naming the same list can use the partial index.
HELD_STATES = ("assigned", "lost_contact", "offered", "outcome_unknown", "preparing", "printed", "printing", "ready")
_HELD_WHERE = sa.text(f"state IN ({', '.join(repr(s) for s in HELD_STATES)})")
sa.Index("ix_jobs_held_printer", jobs.c.node, jobs.c.printer, sqlite_where=_HELD_WHERE, postgresql_where=_HELD_WHERE)
sa.Index("ix_printers_slicer_profile", printers.c.slicer_profile)
# migration 0016: the currencies printers charge in, read by "cheapest" matching one index seek each
sa.Index("ix_printers_hour_currency", printers.c.hour_currency)

# -- issue 8: quotes, idempotency keys, licence grants, value equations, participation ---------

quotes = sa.Table(
    "quotes",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("customer", _NAME, sa.ForeignKey("accounts.name", ondelete="CASCADE"), nullable=False),
    sa.Column("design", _NAME, sa.ForeignKey("designs.slug", ondelete="CASCADE"), nullable=False),
    sa.Column("revision_id", _HASH, nullable=False),
    sa.Column("spec", sa.Text, nullable=False),      # the OrderSpec as canonical JSON
    sa.Column("options", sa.Text, nullable=False),   # the offers, best first by price
    sa.Column("created_at", _TIME, nullable=False),
    sa.Column("expires_at", _TIME, nullable=False),
)

order_keys = sa.Table(
    "order_keys",
    metadata,
    sa.Column("customer", _NAME, sa.ForeignKey("accounts.name", ondelete="CASCADE"), primary_key=True),
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("request_sha256", _HASH, nullable=False),
    sa.Column("order_id", sa.String(32), sa.ForeignKey("orders.id", ondelete="CASCADE"), nullable=False),
    sa.Column("created_at", _TIME, nullable=False),
)

# One fabricated object of an order: its incarnation id is printed as a QR label.
order_objects = sa.Table(
    "order_objects",
    metadata,
    sa.Column("incarnation_id", sa.String(16), primary_key=True),
    sa.Column("order_id", sa.String(32), sa.ForeignKey("orders.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("job_id", sa.String(32), nullable=False, server_default=""),
    sa.Column("part", _PART, nullable=False, server_default=""),
)

grants = sa.Table(
    "grants",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("design", _NAME, sa.ForeignKey("designs.slug", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("revision_id", _HASH, nullable=False, server_default=""),  # "" = every revision
    sa.Column("scope", sa.String(32), nullable=False),
    sa.Column("node", _NAME, nullable=False, server_default=""),  # "" = any node
    sa.Column("until", _TIME, nullable=False),
    sa.Column("granted_by", _NAME, sa.ForeignKey("accounts.name"), nullable=False),
    sa.Column("granted_at", _TIME, nullable=False),
    sa.Column("statement", sa.Text, nullable=False),  # canonical JSON of the fields above
    sa.Column("statement_sha256", _HASH, nullable=False),
    sa.Column("signature", sa.String(128), nullable=False, server_default=""),  # Ed25519 hex, optional
    sa.Column("revoked_at", _TIME, nullable=False, server_default=""),
    # the maintainer's signed revocation (hub.grants.RevocationStatement), "" while not revoked
    sa.Column("revoked_by", _NAME, nullable=False, server_default=""),
    sa.Column("revocation", sa.Text, nullable=False, server_default=""),
    sa.Column("revocation_signature", sa.String(128), nullable=False, server_default=""),
    sa.CheckConstraint("scope IN ('paid','modified','any')", name="scope"),
)
# The live grants of a design (not revoked), by end: the order-time gate and the per-design cap
# (hub.limits.MAX_LIVE_GRANTS) read only these, however many revoked or ended grants are on record.
_LIVE_GRANT = sa.text("revoked_at = ''")
sa.Index("ix_grants_live", grants.c.design, grants.c.until, sqlite_where=_LIVE_GRANT, postgresql_where=_LIVE_GRANT)

value_equations = sa.Table(
    "value_equations",
    metadata,
    sa.Column("design", _NAME, sa.ForeignKey("designs.slug", ondelete="CASCADE"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("equation", sa.Text, nullable=False),
    sa.Column("set_by", _NAME, nullable=False),
    sa.Column("set_at", _TIME, nullable=False),
)

participation = sa.Table(
    "participation",
    metadata,
    sa.Column("design", _NAME, sa.ForeignKey("designs.slug", ondelete="CASCADE"), primary_key=True),
    sa.Column("rung", sa.String(16), nullable=False),
    sa.Column("set_by", _NAME, nullable=False),
    sa.Column("set_at", _TIME, nullable=False),
    sa.CheckConstraint("rung IN ('consume','co-design','co-create')", name="rung"),
)

# -- issue 8: running sums of the community record, kept by hub/store/record_sums.py in the transaction
# of every write that changes them, so that the record reads a few rows instead of every fabrication.

# per design, printer model and material: fabrications, successes, summed relative estimate errors
record_print_stats = sa.Table(
    "record_print_stats",
    metadata,
    sa.Column("design", _NAME, primary_key=True),
    sa.Column("printer_model", sa.String(64), primary_key=True),
    sa.Column("material", sa.String(32), primary_key=True),
    sa.Column("prints", sa.BigInteger, nullable=False),
    sa.Column("successes", sa.BigInteger, nullable=False),
    sa.Column("measured", sa.BigInteger, nullable=False),  # successes with an estimated and an actual time
    sa.Column("time_error_sum", sa.Float, nullable=False),
    sa.Column("filament_error_sum", sa.Float, nullable=False),
)

# per design, printer model, material and settings (JSON): successful fabrications
record_print_settings = sa.Table(
    "record_print_settings",
    metadata,
    sa.Column("design", _NAME, primary_key=True),
    sa.Column("printer_model", sa.String(64), primary_key=True),
    sa.Column("material", sa.String(32), primary_key=True),
    sa.Column("settings", sa.Text, primary_key=True),
    sa.Column("successes", sa.BigInteger, nullable=False),
)

# per design: the customers' and makers' ratings (criterion "" = stars) and per criterion, sum and count
record_votes = sa.Table(
    "record_votes",
    metadata,
    sa.Column("design", _NAME, primary_key=True),
    sa.Column("criterion", sa.String(64), primary_key=True),
    sa.Column("total", sa.BigInteger, nullable=False),
    sa.Column("count", sa.BigInteger, nullable=False),
)
# issue 8 (migration 0012): a stored quote is ordered once; placing one finds its order by the quote
sa.Index("ix_orders_quote_id", orders.c.quote_id)
