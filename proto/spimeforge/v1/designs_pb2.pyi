from spimeforge.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RevisionKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REVISION_KIND_UNSPECIFIED: _ClassVar[RevisionKind]
    REVISION_KIND_PUSH: _ClassVar[RevisionKind]
    REVISION_KIND_FORK: _ClassVar[RevisionKind]
    REVISION_KIND_PROPOSAL: _ClassVar[RevisionKind]

class ProposalState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROPOSAL_STATE_UNSPECIFIED: _ClassVar[ProposalState]
    PROPOSAL_STATE_OPEN: _ClassVar[ProposalState]
    PROPOSAL_STATE_ACCEPTED: _ClassVar[ProposalState]
    PROPOSAL_STATE_DECLINED: _ClassVar[ProposalState]
REVISION_KIND_UNSPECIFIED: RevisionKind
REVISION_KIND_PUSH: RevisionKind
REVISION_KIND_FORK: RevisionKind
REVISION_KIND_PROPOSAL: RevisionKind
PROPOSAL_STATE_UNSPECIFIED: ProposalState
PROPOSAL_STATE_OPEN: ProposalState
PROPOSAL_STATE_ACCEPTED: ProposalState
PROPOSAL_STATE_DECLINED: ProposalState

class MissingBlobsRequest(_message.Message):
    __slots__ = ("sha256",)
    SHA256_FIELD_NUMBER: _ClassVar[int]
    sha256: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, sha256: _Optional[_Iterable[str]] = ...) -> None: ...

class MissingBlobsResponse(_message.Message):
    __slots__ = ("sha256",)
    SHA256_FIELD_NUMBER: _ClassVar[int]
    sha256: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, sha256: _Optional[_Iterable[str]] = ...) -> None: ...

class UploadBlobResponse(_message.Message):
    __slots__ = ("sha256", "size", "already_present")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ALREADY_PRESENT_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    size: int
    already_present: bool
    def __init__(self, sha256: _Optional[str] = ..., size: _Optional[int] = ..., already_present: _Optional[bool] = ...) -> None: ...

class DownloadBlobRequest(_message.Message):
    __slots__ = ("sha256", "offset")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    offset: int
    def __init__(self, sha256: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class PushRequest(_message.Message):
    __slots__ = ("design", "parent_ids", "manifest_toml", "files", "created_at", "message", "signature", "public_key", "create")
    DESIGN_FIELD_NUMBER: _ClassVar[int]
    PARENT_IDS_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_TOML_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    CREATE_FIELD_NUMBER: _ClassVar[int]
    design: str
    parent_ids: _containers.RepeatedScalarFieldContainer[str]
    manifest_toml: str
    files: _containers.RepeatedCompositeFieldContainer[_common_pb2.FileEntry]
    created_at: str
    message: str
    signature: bytes
    public_key: bytes
    create: bool
    def __init__(self, design: _Optional[str] = ..., parent_ids: _Optional[_Iterable[str]] = ..., manifest_toml: _Optional[str] = ..., files: _Optional[_Iterable[_Union[_common_pb2.FileEntry, _Mapping]]] = ..., created_at: _Optional[str] = ..., message: _Optional[str] = ..., signature: _Optional[bytes] = ..., public_key: _Optional[bytes] = ..., create: _Optional[bool] = ...) -> None: ...

class PushResponse(_message.Message):
    __slots__ = ("revision_id", "is_proposal", "proposal_id", "unchanged", "reports")
    REVISION_ID_FIELD_NUMBER: _ClassVar[int]
    IS_PROPOSAL_FIELD_NUMBER: _ClassVar[int]
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    revision_id: str
    is_proposal: bool
    proposal_id: str
    unchanged: bool
    reports: _containers.RepeatedCompositeFieldContainer[_common_pb2.PrintabilityReport]
    def __init__(self, revision_id: _Optional[str] = ..., is_proposal: _Optional[bool] = ..., proposal_id: _Optional[str] = ..., unchanged: _Optional[bool] = ..., reports: _Optional[_Iterable[_Union[_common_pb2.PrintabilityReport, _Mapping]]] = ...) -> None: ...

class Design(_message.Message):
    __slots__ = ("slug", "title", "description", "license", "head_revision_id", "maintainers", "tags", "forked_from", "created_at", "updated_at", "revision_count", "attributions")
    SLUG_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LICENSE_FIELD_NUMBER: _ClassVar[int]
    HEAD_REVISION_ID_FIELD_NUMBER: _ClassVar[int]
    MAINTAINERS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    FORKED_FROM_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    REVISION_COUNT_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    slug: str
    title: str
    description: str
    license: str
    head_revision_id: str
    maintainers: _containers.RepeatedScalarFieldContainer[str]
    tags: _containers.RepeatedScalarFieldContainer[str]
    forked_from: _containers.RepeatedScalarFieldContainer[str]
    created_at: str
    updated_at: str
    revision_count: int
    attributions: _containers.RepeatedCompositeFieldContainer[_common_pb2.Attribution]
    def __init__(self, slug: _Optional[str] = ..., title: _Optional[str] = ..., description: _Optional[str] = ..., license: _Optional[str] = ..., head_revision_id: _Optional[str] = ..., maintainers: _Optional[_Iterable[str]] = ..., tags: _Optional[_Iterable[str]] = ..., forked_from: _Optional[_Iterable[str]] = ..., created_at: _Optional[str] = ..., updated_at: _Optional[str] = ..., revision_count: _Optional[int] = ..., attributions: _Optional[_Iterable[_Union[_common_pb2.Attribution, _Mapping]]] = ...) -> None: ...

class Revision(_message.Message):
    __slots__ = ("id", "design", "parent_ids", "manifest_toml", "files", "author", "created_at", "message", "signature", "public_key", "kind", "reports", "attributions")
    ID_FIELD_NUMBER: _ClassVar[int]
    DESIGN_FIELD_NUMBER: _ClassVar[int]
    PARENT_IDS_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_TOML_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    id: str
    design: str
    parent_ids: _containers.RepeatedScalarFieldContainer[str]
    manifest_toml: str
    files: _containers.RepeatedCompositeFieldContainer[_common_pb2.FileEntry]
    author: str
    created_at: str
    message: str
    signature: bytes
    public_key: bytes
    kind: RevisionKind
    reports: _containers.RepeatedCompositeFieldContainer[_common_pb2.PrintabilityReport]
    attributions: _containers.RepeatedCompositeFieldContainer[_common_pb2.Attribution]
    def __init__(self, id: _Optional[str] = ..., design: _Optional[str] = ..., parent_ids: _Optional[_Iterable[str]] = ..., manifest_toml: _Optional[str] = ..., files: _Optional[_Iterable[_Union[_common_pb2.FileEntry, _Mapping]]] = ..., author: _Optional[str] = ..., created_at: _Optional[str] = ..., message: _Optional[str] = ..., signature: _Optional[bytes] = ..., public_key: _Optional[bytes] = ..., kind: _Optional[_Union[RevisionKind, str]] = ..., reports: _Optional[_Iterable[_Union[_common_pb2.PrintabilityReport, _Mapping]]] = ..., attributions: _Optional[_Iterable[_Union[_common_pb2.Attribution, _Mapping]]] = ...) -> None: ...

class GetDesignRequest(_message.Message):
    __slots__ = ("design",)
    DESIGN_FIELD_NUMBER: _ClassVar[int]
    design: str
    def __init__(self, design: _Optional[str] = ...) -> None: ...

class GetRevisionRequest(_message.Message):
    __slots__ = ("design", "revision_id")
    DESIGN_FIELD_NUMBER: _ClassVar[int]
    REVISION_ID_FIELD_NUMBER: _ClassVar[int]
    design: str
    revision_id: str
    def __init__(self, design: _Optional[str] = ..., revision_id: _Optional[str] = ...) -> None: ...

class LogRequest(_message.Message):
    __slots__ = ("design", "from_revision_id", "limit", "page")
    DESIGN_FIELD_NUMBER: _ClassVar[int]
    FROM_REVISION_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    design: str
    from_revision_id: str
    limit: int
    page: _common_pb2.PageRequest
    def __init__(self, design: _Optional[str] = ..., from_revision_id: _Optional[str] = ..., limit: _Optional[int] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class LogResponse(_message.Message):
    __slots__ = ("revisions", "next_page_token")
    REVISIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    revisions: _containers.RepeatedCompositeFieldContainer[Revision]
    next_page_token: str
    def __init__(self, revisions: _Optional[_Iterable[_Union[Revision, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("text", "license", "tags", "page")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    LICENSE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    text: str
    license: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    page: _common_pb2.PageRequest
    def __init__(self, text: _Optional[str] = ..., license: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("designs", "next_page_token")
    DESIGNS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    designs: _containers.RepeatedCompositeFieldContainer[Design]
    next_page_token: str
    def __init__(self, designs: _Optional[_Iterable[_Union[Design, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ForkParent(_message.Message):
    __slots__ = ("design", "revision_id")
    DESIGN_FIELD_NUMBER: _ClassVar[int]
    REVISION_ID_FIELD_NUMBER: _ClassVar[int]
    design: str
    revision_id: str
    def __init__(self, design: _Optional[str] = ..., revision_id: _Optional[str] = ...) -> None: ...

class ForkRequest(_message.Message):
    __slots__ = ("parents", "name", "license", "message", "title")
    PARENTS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LICENSE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    parents: _containers.RepeatedCompositeFieldContainer[ForkParent]
    name: str
    license: str
    message: str
    title: str
    def __init__(self, parents: _Optional[_Iterable[_Union[ForkParent, _Mapping]]] = ..., name: _Optional[str] = ..., license: _Optional[str] = ..., message: _Optional[str] = ..., title: _Optional[str] = ...) -> None: ...

class ForkResponse(_message.Message):
    __slots__ = ("design", "revision")
    DESIGN_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    design: Design
    revision: Revision
    def __init__(self, design: _Optional[_Union[Design, _Mapping]] = ..., revision: _Optional[_Union[Revision, _Mapping]] = ...) -> None: ...

class Proposal(_message.Message):
    __slots__ = ("id", "design", "revision", "author", "state", "decided_by", "reason", "created_at", "decided_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    DESIGN_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    design: str
    revision: Revision
    author: str
    state: ProposalState
    decided_by: str
    reason: str
    created_at: str
    decided_at: str
    def __init__(self, id: _Optional[str] = ..., design: _Optional[str] = ..., revision: _Optional[_Union[Revision, _Mapping]] = ..., author: _Optional[str] = ..., state: _Optional[_Union[ProposalState, str]] = ..., decided_by: _Optional[str] = ..., reason: _Optional[str] = ..., created_at: _Optional[str] = ..., decided_at: _Optional[str] = ...) -> None: ...

class ListProposalsRequest(_message.Message):
    __slots__ = ("design", "include_closed", "page")
    DESIGN_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_CLOSED_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    design: str
    include_closed: bool
    page: _common_pb2.PageRequest
    def __init__(self, design: _Optional[str] = ..., include_closed: _Optional[bool] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListProposalsResponse(_message.Message):
    __slots__ = ("proposals", "next_page_token")
    PROPOSALS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    proposals: _containers.RepeatedCompositeFieldContainer[Proposal]
    next_page_token: str
    def __init__(self, proposals: _Optional[_Iterable[_Union[Proposal, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class AcceptProposalRequest(_message.Message):
    __slots__ = ("design", "proposal_id")
    DESIGN_FIELD_NUMBER: _ClassVar[int]
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    design: str
    proposal_id: str
    def __init__(self, design: _Optional[str] = ..., proposal_id: _Optional[str] = ...) -> None: ...

class AcceptProposalResponse(_message.Message):
    __slots__ = ("proposal", "design")
    PROPOSAL_FIELD_NUMBER: _ClassVar[int]
    DESIGN_FIELD_NUMBER: _ClassVar[int]
    proposal: Proposal
    design: Design
    def __init__(self, proposal: _Optional[_Union[Proposal, _Mapping]] = ..., design: _Optional[_Union[Design, _Mapping]] = ...) -> None: ...

class DeclineProposalRequest(_message.Message):
    __slots__ = ("design", "proposal_id", "reason")
    DESIGN_FIELD_NUMBER: _ClassVar[int]
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    design: str
    proposal_id: str
    reason: str
    def __init__(self, design: _Optional[str] = ..., proposal_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class AddMaintainerRequest(_message.Message):
    __slots__ = ("design", "account")
    DESIGN_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    design: str
    account: str
    def __init__(self, design: _Optional[str] = ..., account: _Optional[str] = ...) -> None: ...
