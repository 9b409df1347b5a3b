"""Pin the public surface (``__all__``) of the hub packages (httpx's test_exported_members)."""

from __future__ import annotations

import importlib

import pytest

EXPORTS = {
    "hub.errors": [
        "AlreadyClaimed", "AlreadyExists", "FailedPrecondition", "HubError", "IntegrityError", "InvalidArgument",
        "InvalidLicense", "InvalidManifest", "InvalidTransition", "LicenseConflict", "NotFound", "PermissionDenied",
        "ResourceExhausted", "StaleHead", "StorageError", "Unauthenticated", "local_file_problem",
    ],
    "hub.licenses": [
        "ANY", "Decision", "LicenseRule", "Obligations", "allowed_derivative_licenses", "check_derivative",
        "check_revision_license", "license_ids", "may_fabricate", "obligations", "parse_expression", "rule_for", "rules",
    ],
    "hub.provenance": [
        "AuthorshipCheck", "ChainLink", "ChainReport", "FileEntry", "canonical_json", "generate_private_key",
        "public_key_of", "registered_authorship", "revision_document", "revision_id", "sha256_hex", "sign",
        "verify_chain", "verify_signature",
    ],
    "hub.keys": [
        "FINGERPRINT_HEX", "KeyRegistration", "REGISTRATION_TYPE", "SMALL_ORDER_ENCODINGS", "check_public_key",
        "fingerprint", "proof_message", "prove_possession", "registration_message", "sign_registration",
        "verify_registration", "verify_strict", "vouch",
    ],
    "hub.store.hub_key": ["HUB_KEY_NAME", "install_hub_key", "load_or_create_hub_key", "read_hub_key"],
    "hub.bundle": [
        "BUNDLE_FORMAT", "FORMATS", "MAX_BUNDLE_BYTES", "MAX_DEPTH", "MAX_FILES", "MAX_REGISTRATIONS", "MAX_REVISIONS",
        "Bundle", "bundle_document", "parse_bundle",
    ],
    "hub.domain": [
        "Account", "Attribution", "BlobInfo", "Design", "Fabrication", "FileEntry", "LedgerLine", "PrintabilityRecord",
        "Proposal", "ProposalState", "RatingRecord", "Revision", "RevisionKind", "Role", "SLUG_PATTERN",
    ],
    "hub.auth": ["PUBLIC_PREFIXES", "ROLE_RULES", "TokenCache", "authorize", "bearer_token", "is_public", "new_token", "short_name"],
    "hub.config": ["HubConfig", "default_data_dir", "is_loopback", "parse_listen"],
    "hub.exports": ["OKH_MEDIA_TYPE", "PROV_MEDIA_TYPE", "Lineage", "okh_manifest", "prov_json"],
    "hub.store": [
        "AccountStore", "BlobStore", "DesignStore", "JobStore", "NodeStore", "RecordStore", "Store", "open_store",
    ],
    "hub.store.engine": ["connect", "insert_new", "make_engine", "migrate", "one_writer", "sqlite_url", "write"],
    "hub.store.notify": ["Listener", "listen"],
    "hub.store.replicas": ["Released", "ReplicaStore"],
    "hub.service.replicas": ["DEFAULT_POLICY", "ReplicaPolicy", "ReplicaService", "new_replica_id", "parse_wakeup"],
    "hub.store.blob_backend": ["BlobBackend", "open_blob_store", "open_blob_store_for_copy"],
    "hub.store.s3blobs": ["PART_BYTES", "S3BlobStore", "S3Location", "S3Upload", "parse_s3_url"],
    "hub.service": [
        "AccountService", "BlobService", "DesignService", "ForkService", "GrantService", "Hub", "JobService",
        "NodeService", "OrderService", "RecordService",
    ],
    "hub.jobs": [
        "ACTIVE", "DEFAULT_TIMERS", "EVENT_KINDS", "HELD", "TERMINAL", "TRANSITIONS", "Change", "Command", "Job",
        "JobSpec", "JobState", "TimerPolicy", "check_data", "check_transition", "event_effect", "is_unstarted",
        "lost_contact_deadline", "production_update",
    ],
    "hub.scheduler": ["Money", "PrinterRecord", "candidates", "fits", "qualifies"],
    "hub.orders": ["FINAL_STATES", "Grant", "JOB_STAGE", "LedgerRow", "Order", "OrderObject", "OrderState", "PrintedPart", "RatingRow", "StoredQuote", "TRANSITIONS", "advance", "cancellable", "derive_state",
                   "printed_part"],
    "hub.ledger": ["Beneficiaries", "COMMONS_FUND", "Costs", "DEFAULT_EQUATION", "RESERVED_RECIPIENTS", "Share", "ValueEquation", "distribute", "format_money", "parse_equation", "payouts", "portions"],
    "hub.ratings": ["CRITERIA", "MAX_COMMENT_CHARS", "PRIOR_MEAN", "PRIOR_WEIGHT", "ROLES", "Reputation", "Vote", "check_rating", "reputation",
                   "reputation_of_totals"],
    "hub.quotes": ["Box", "bounding_box", "Correction", "DEFAULT_FEES", "Estimate", "Fees", "HistoryPoint", "MAX_QUANTITY", "Price", "QuoteOption", "RANK_RULES", "Rates", "correction", "currencies", "part_weight", "per_copy", "price", "rank"],
    "hub.geo": ["EARTH_RADIUS_KM", "MAX_NEAR_CHARS", "Point", "distance_km", "parse_near", "point"],
    "hub.api.server": ["GenericHandlersOnly", "HubServer", "MAX_MESSAGE_BYTES", "TlsFiles", "admission_of", "tls_credentials"],
    "hub.api.interceptors": ["REFUSAL_LOG_INTERVAL_S", "STATUS_OF", "HubInterceptor", "RefusalLog", "current_account",
                             "peer_host", "peer_network", "status_of"],
    "hub.api.errors_detail": ["DOMAIN", "rich_status", "trailing_metadata"],
    "hub.paths": [
        "CLIENT_RESERVED", "MAX_COMPONENT_BYTES", "MAX_DEPTH", "MAX_PATH_CHARS", "PathProblem", "check_path",
        "check_paths", "fold", "path_problem",
    ],
    "hub.service.lineage": ["Lineage", "attribution_of", "upstream"],
    "hub.service.batching": [
        "Batcher", "GroupCommit", "Opened", "Opening", "all_at_once", "outbox_reader", "session_closer", "session_opener",
    ],
    "hub.__main__": ["compose", "main", "serve"],
    "hub.api.metrics": [
        "FleetSnapshot", "HubMetrics", "MetricsInterceptor", "MetricsServer", "feed_from", "start_metrics_server",
    ],
    "hub.backup": ["FORMAT", "MANIFEST", "BackupSummary", "backup", "require_hub", "restore"],
    "hub.localfiles": ["FileTooLarge", "NotRegularFile", "file_kind", "not_replaceable", "read_regular", "replacing"],
    "hub.api.wide_numbers": ["MAX_STORED_INT", "too_wide", "too_wide_refusal"],
    "hub.api.item_counts": ["UNLISTED_MAX_ITEMS", "too_many"],
    "hub.api.field_limits": ["check_request"],
    "hub.api.text_fields": ["nul_field", "nul_refusal"],
    "hub.api.blob_wire": ["decode_chunk"],
    "hub.api.live_calls": ["RECHECK_S", "LiveCalls"],
    "hub.store.dump": ["Export", "Row", "_thd_export", "_thd_import", "_thd_migrate_to", "_thd_revision",
                       "schema_revision"],
    "hub.sd_notify": ["notify", "ready", "stopping"],
    "hub.runtime": ["GC_THRESHOLDS", "MALLOC_MMAP_BYTES", "MALLOC_TRIM_BYTES", "SWITCH_INTERVAL_S", "tune_gc", "tune_malloc",
                    "tune_switching"],
    "hub.ops_commands": ["COMMANDS", "EXAMPLES", "completion_script", "finish_parser", "register", "run", "version"],
    "hub.client.progress": ["Progress", "format_amount"],
    "hub.client.terminal": ["shown"],
    "hub.client.statcache": ["CACHE_PATH", "RACY_NS", "StatCache", "read_state_json", "stat_key"],
    "hub.client.examples": ["EXAMPLES", "apply_examples", "commands"],
    "node_agent.sd_notify": ["notify", "ready", "stopping"],
    "node_agent.jobs": [
        "ACTIVE", "DETECTED_BY", "EVENT_DATA_KEYS", "EventKind", "InvalidEventData", "InvalidTransition", "JobState",
        "MAX_DATA_ENTRIES", "MAX_KEY_CHARS", "MAX_VALUE_CHARS", "TERMINAL", "TRANSITIONS", "advance",
        "check_event_data",
    ],
    "node_agent.messages": [
        "AgentMessage", "ArtifactRef", "Assigned", "Attribution", "Cancel", "CommandAck", "DeclineReason", "Desired",
        "DesiredJob", "Drain", "EventAck", "Heartbeat", "HeldJob", "Hello", "Hold", "HubCommand", "JobEvent",
        "JobProgress", "Offer", "OfferReply", "Phase", "Ping", "PrinterChanged", "PrinterSnapshot", "StartDenied",
        "StartGranted", "StartRequest", "Superseded", "Welcome",
    ],
    "node_agent.journal": ["Journal", "JournalError", "JournalJob", "PrinterFlags"],
    "node_agent.hub_client": [
        "ArtifactError", "ClientCertificate", "HubConnection", "HubError", "HubRefused", "HubUnavailable", "KEEPALIVE_OPTIONS",
        "ReconnectPolicy", "SessionStream", "backoff_delay", "enroll",
    ],
    "node_agent.pipeline": [
        "Emit", "Fetch", "PipelineSettings", "PreparedPrint", "StepFailed", "gcode_header", "prepare_job", "safe_job",
    ],
    "node_agent.worker": ["AGENT_VERSION", "ControlError", "HubLink", "Session", "Worker"],
    "node_agent.control": [
        "ControlServer", "Controls", "MAX_REQUEST_BYTES", "NoDaemon", "RequestTooLarge", "control_path", "request",
    ],
    "node_agent.daemon": ["DaemonError", "enroll_node", "read_credential", "run_daemon"],
    "node_agent.printers": ["Slot", "busy", "decline", "fits", "snapshot", "status_entry"],
    "node_agent.config": [
        "BUSY_RANGES", "ConfigError", "DEFAULT_END_GCODE", "FileRefused", "PUSH_SILENCE_S", "FirmwareConfig", "NodeConfig", "NodeInfo", "PrinterConfig",
        "Rate", "SafetyConfig", "load_config", "parse_config", "read_regular",
    ],
    "node_agent.metrics": ["MetricsAddressError", "MetricsServer", "NodeMetrics", "start_metrics_server"],
    "node_agent.progress": ["Progress", "format_amount"],
    "node_agent.ops_cli": [
        "EXAMPLES", "SHELLS", "add_completion", "commands", "completion_script", "finish_parser", "print_completion",
        "version",
    ],
    "hub.limits": [
        "ADMISSION_WAIT_S", "CONCURRENT_CALLS", "DEFAULT_PAGE_SIZE", "DEFAULT_RATES", "FIELD_LIMITS", "ITEM_LIMITS",
        "MAX_CHECKED_MESHES", "MAX_FILES", "MAX_HELD", "MAX_LIVE_GRANTS", "MAX_MANIFEST_BYTES", "MAX_PAGE_SIZE",
        "MAX_PEERS_TRACKED", "MAX_PRINTERS",
        "MAX_WAITING", "MULTI_LINE_FIELDS",
        "PAGE_MAX_BYTES", "RATE_CLASSES", "REFUSAL_COST", "PageCut", "RateLimit", "TokenBucket", "auth_failures_limited",
        "check_fields",
        "check_page_size", "check_page_token", "check_plain_text", "check_visible", "cut_page",
        "parse_rates", "plain_text", "rate_limited", "too_busy", "too_many_grants", "too_many_waiting",
    ],
    "hub.workers": ["Admission", "CallGate", "CheckLimits", "CheckPool", "FailureGate", "OwnLoop", "RateGate",
                    "aborted_report",
                    "check_mesh"],
    "node_agent.safety": [
        "ALLOW_LISTS", "Allowed", "Checker", "FORBIDDEN_COMMANDS", "JobRefused", "MAX_COMMAND_CHARS", "SafetyLimits",
        "Violation", "check_lines", "enforce", "limits_for",
    ],
    "node_agent.jobfile": [
        "GcodeFileError", "JobChanged", "MAX_LINE_BYTES", "STAND_IN", "SafeJob", "StreamedCommands", "VerifiedReader",
        "check_file",
    ],
    "node_agent.gcode": ["Command", "PreparedJob", "STRING_ARGS", "layer_marker", "parse_command", "parse_words", "prepare",
                         "strip_comment"],
    "node_agent.drivers.multipart": ["MultipartBody"],
    "node_agent.drivers.octoprint_socket": [
        "HandshakeGauge", "HandshakeLimits", "MAX_PUSH_MESSAGE_BYTES", "PushHandshakeRefused", "PushMessageTooLarge",
        "cap_frames", "open_push_socket",
    ],
    "node_agent.busy": ["BusyLimits"],
    "node_agent.backoff": ["Retry", "RetryPolicy", "backoff_delay"],
    "node_agent.inputs": ["MESH_SUFFIXES", "Model", "model", "read_by"],
    "hub.service.revision_trees": ["RevisionTrees", "TreeBudget", "evictions"],
    "slicer_bridge.render_cache": ["RenderCache", "render_key"],
    "slicer_bridge.scad_sandbox": [
        "SandboxLimits", "ScadReferenceError", "check_references", "confined", "copy_into", "references", "sandbox_argv",
        "sandbox_env",
    ],
}


@pytest.mark.parametrize("module", sorted(EXPORTS))
def test_exported_members(module: str) -> None:
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(EXPORTS[module])
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name} is exported but missing"
