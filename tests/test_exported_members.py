"""Pin the public surface (``__all__``) of the hub packages (httpx's test_exported_members)."""

from __future__ import annotations

import importlib

import pytest

EXPORTS = {
    "hub.errors": [
        "AlreadyClaimed", "AlreadyExists", "FailedPrecondition", "HubError", "IntegrityError", "InvalidArgument",
        "InvalidLicense", "InvalidManifest", "InvalidTransition", "LicenseConflict", "NotFound", "PermissionDenied",
        "ResourceExhausted", "StaleHead", "StorageError", "Unauthenticated",
    ],
    "hub.licenses": [
        "ANY", "Decision", "LicenseRule", "Obligations", "allowed_derivative_licenses", "check_derivative",
        "license_ids", "may_fabricate", "obligations", "parse_expression", "rule_for", "rules",
    ],
    "hub.provenance": [
        "ChainLink", "ChainReport", "FileEntry", "canonical_json", "generate_private_key", "public_key_of",
        "revision_document", "revision_id", "sha256_hex", "sign", "verify_chain", "verify_signature",
    ],
    "hub.domain": [
        "Account", "Attribution", "BlobInfo", "Design", "Fabrication", "FileEntry", "LedgerLine", "PrintabilityRecord",
        "Proposal", "ProposalState", "RatingRecord", "Revision", "RevisionKind", "Role", "SLUG_PATTERN",
    ],
    "hub.auth": ["PUBLIC_PREFIXES", "ROLE_RULES", "authorize", "bearer_token", "is_public", "new_token", "short_name"],
    "hub.config": ["HubConfig", "default_data_dir", "parse_listen"],
    "hub.exports": ["OKH_MEDIA_TYPE", "PROV_MEDIA_TYPE", "Lineage", "okh_manifest", "prov_json"],
    "hub.store": ["AccountStore", "BlobStore", "DesignStore", "RecordStore", "Store", "open_store"],
    "hub.store.engine": ["connect", "make_engine", "migrate", "sqlite_url", "write"],
    "hub.service": ["AccountService", "BlobService", "DesignService", "ForkService", "Hub", "RecordService"],
    "hub.api.server": ["HubServer", "MAX_MESSAGE_BYTES", "TlsFiles"],
    "hub.api.interceptors": ["STATUS_OF", "HubInterceptor", "current_account", "status_of"],
    "hub.__main__": ["compose", "main", "serve"],
}


@pytest.mark.parametrize("module", sorted(EXPORTS))
def test_exported_members(module: str) -> None:
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(EXPORTS[module])
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name} is exported but missing"
