from spimeforge.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExportFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPORT_FORMAT_UNSPECIFIED: _ClassVar[ExportFormat]
    EXPORT_FORMAT_PROV_JSON: _ClassVar[ExportFormat]
    EXPORT_FORMAT_OKH: _ClassVar[ExportFormat]
EXPORT_FORMAT_UNSPECIFIED: ExportFormat
EXPORT_FORMAT_PROV_JSON: ExportFormat
EXPORT_FORMAT_OKH: ExportFormat

class GetRecordRequest(_message.Message):
    __slots__ = ("design",)
    DESIGN_FIELD_NUMBER: _ClassVar[int]
    design: str
    def __init__(self, design: _Optional[str] = ...) -> None: ...

class Contributor(_message.Message):
    __slots__ = ("name", "revisions", "accepted_proposals", "roles")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REVISIONS_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_PROPOSALS_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    name: str
    revisions: int
    accepted_proposals: int
    roles: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., revisions: _Optional[int] = ..., accepted_proposals: _Optional[int] = ..., roles: _Optional[_Iterable[str]] = ...) -> None: ...

class LineageEdge(_message.Message):
    __slots__ = ("child_design", "child_revision_id", "parent_design", "parent_revision_id")
    CHILD_DESIGN_FIELD_NUMBER: _ClassVar[int]
    CHILD_REVISION_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_DESIGN_FIELD_NUMBER: _ClassVar[int]
    PARENT_REVISION_ID_FIELD_NUMBER: _ClassVar[int]
    child_design: str
    child_revision_id: str
    parent_design: str
    parent_revision_id: str
    def __init__(self, child_design: _Optional[str] = ..., child_revision_id: _Optional[str] = ..., parent_design: _Optional[str] = ..., parent_revision_id: _Optional[str] = ...) -> None: ...

class Fabrication(_message.Message):
    __slots__ = ("job_id", "order_id", "revision_id", "node", "printer", "material", "settings", "estimated_seconds", "actual_seconds", "estimated_filament_g", "actual_filament_g", "outcome", "failure_reason", "finished_at", "incarnation_id", "printer_model", "parameters", "actual_filament_mm", "resends")
    class SettingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    REVISION_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    PRINTER_FIELD_NUMBER: _ClassVar[int]
    MATERIAL_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_FILAMENT_G_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_FILAMENT_G_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_ID_FIELD_NUMBER: _ClassVar[int]
    PRINTER_MODEL_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_FILAMENT_MM_FIELD_NUMBER: _ClassVar[int]
    RESENDS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    order_id: str
    revision_id: str
    node: str
    printer: str
    material: str
    settings: _containers.ScalarMap[str, str]
    estimated_seconds: int
    actual_seconds: int
    estimated_filament_g: float
    actual_filament_g: float
    outcome: str
    failure_reason: str
    finished_at: str
    incarnation_id: str
    printer_model: str
    parameters: _containers.ScalarMap[str, str]
    actual_filament_mm: float
    resends: int
    def __init__(self, job_id: _Optional[str] = ..., order_id: _Optional[str] = ..., revision_id: _Optional[str] = ..., node: _Optional[str] = ..., printer: _Optional[str] = ..., material: _Optional[str] = ..., settings: _Optional[_Mapping[str, str]] = ..., estimated_seconds: _Optional[int] = ..., actual_seconds: _Optional[int] = ..., estimated_filament_g: _Optional[float] = ..., actual_filament_g: _Optional[float] = ..., outcome: _Optional[str] = ..., failure_reason: _Optional[str] = ..., finished_at: _Optional[str] = ..., incarnation_id: _Optional[str] = ..., printer_model: _Optional[str] = ..., parameters: _Optional[_Mapping[str, str]] = ..., actual_filament_mm: _Optional[float] = ..., resends: _Optional[int] = ...) -> None: ...

class PrintAggregate(_message.Message):
    __slots__ = ("printer_model", "material", "prints", "successes", "success_rate", "mean_time_error", "mean_filament_error", "typical_settings", "summary")
    class TypicalSettingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PRINTER_MODEL_FIELD_NUMBER: _ClassVar[int]
    MATERIAL_FIELD_NUMBER: _ClassVar[int]
    PRINTS_FIELD_NUMBER: _ClassVar[int]
    SUCCESSES_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_RATE_FIELD_NUMBER: _ClassVar[int]
    MEAN_TIME_ERROR_FIELD_NUMBER: _ClassVar[int]
    MEAN_FILAMENT_ERROR_FIELD_NUMBER: _ClassVar[int]
    TYPICAL_SETTINGS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    printer_model: str
    material: str
    prints: int
    successes: int
    success_rate: float
    mean_time_error: float
    mean_filament_error: float
    typical_settings: _containers.ScalarMap[str, str]
    summary: str
    def __init__(self, printer_model: _Optional[str] = ..., material: _Optional[str] = ..., prints: _Optional[int] = ..., successes: _Optional[int] = ..., success_rate: _Optional[float] = ..., mean_time_error: _Optional[float] = ..., mean_filament_error: _Optional[float] = ..., typical_settings: _Optional[_Mapping[str, str]] = ..., summary: _Optional[str] = ...) -> None: ...

class Reputation(_message.Message):
    __slots__ = ("score", "mean", "count", "criteria")
    class CriteriaEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SCORE_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    CRITERIA_FIELD_NUMBER: _ClassVar[int]
    score: float
    mean: float
    count: int
    criteria: _containers.ScalarMap[str, float]
    def __init__(self, score: _Optional[float] = ..., mean: _Optional[float] = ..., count: _Optional[int] = ..., criteria: _Optional[_Mapping[str, float]] = ...) -> None: ...

class LedgerEntry(_message.Message):
    __slots__ = ("order_id", "recipient", "share", "amount", "equation_version", "explanation", "design", "at")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    EQUATION_VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    DESIGN_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    recipient: str
    share: str
    amount: _common_pb2.Money
    equation_version: str
    explanation: str
    design: str
    at: str
    def __init__(self, order_id: _Optional[str] = ..., recipient: _Optional[str] = ..., share: _Optional[str] = ..., amount: _Optional[_Union[_common_pb2.Money, _Mapping]] = ..., equation_version: _Optional[str] = ..., explanation: _Optional[str] = ..., design: _Optional[str] = ..., at: _Optional[str] = ...) -> None: ...

class LedgerRequest(_message.Message):
    __slots__ = ("design", "node", "limit")
    DESIGN_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    design: str
    node: str
    limit: int
    def __init__(self, design: _Optional[str] = ..., node: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class Balance(_message.Message):
    __slots__ = ("recipient", "total")
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    recipient: str
    total: _common_pb2.Money
    def __init__(self, recipient: _Optional[str] = ..., total: _Optional[_Union[_common_pb2.Money, _Mapping]] = ...) -> None: ...

class LedgerResponse(_message.Message):
    __slots__ = ("balances", "entries")
    BALANCES_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    balances: _containers.RepeatedCompositeFieldContainer[Balance]
    entries: _containers.RepeatedCompositeFieldContainer[LedgerEntry]
    def __init__(self, balances: _Optional[_Iterable[_Union[Balance, _Mapping]]] = ..., entries: _Optional[_Iterable[_Union[LedgerEntry, _Mapping]]] = ...) -> None: ...

class ValueEquation(_message.Message):
    __slots__ = ("design", "version", "maker", "design_lineage", "commons", "own_revision", "upstream")
    DESIGN_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MAKER_FIELD_NUMBER: _ClassVar[int]
    DESIGN_LINEAGE_FIELD_NUMBER: _ClassVar[int]
    COMMONS_FIELD_NUMBER: _ClassVar[int]
    OWN_REVISION_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_FIELD_NUMBER: _ClassVar[int]
    design: str
    version: str
    maker: str
    design_lineage: str
    commons: str
    own_revision: str
    upstream: str
    def __init__(self, design: _Optional[str] = ..., version: _Optional[str] = ..., maker: _Optional[str] = ..., design_lineage: _Optional[str] = ..., commons: _Optional[str] = ..., own_revision: _Optional[str] = ..., upstream: _Optional[str] = ...) -> None: ...

class SetValueEquationRequest(_message.Message):
    __slots__ = ("equation",)
    EQUATION_FIELD_NUMBER: _ClassVar[int]
    equation: ValueEquation
    def __init__(self, equation: _Optional[_Union[ValueEquation, _Mapping]] = ...) -> None: ...

class SetParticipationRequest(_message.Message):
    __slots__ = ("design", "rung")
    DESIGN_FIELD_NUMBER: _ClassVar[int]
    RUNG_FIELD_NUMBER: _ClassVar[int]
    design: str
    rung: str
    def __init__(self, design: _Optional[str] = ..., rung: _Optional[str] = ...) -> None: ...

class CommunityRecord(_message.Message):
    __slots__ = ("design", "license", "revision_count", "contributors", "lineage", "fabrications", "ratings", "ledger", "attributions", "aggregates", "design_reputation", "participation", "value_equation", "fabrication_count", "ladder")
    DESIGN_FIELD_NUMBER: _ClassVar[int]
    LICENSE_FIELD_NUMBER: _ClassVar[int]
    REVISION_COUNT_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTORS_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_FIELD_NUMBER: _ClassVar[int]
    FABRICATIONS_FIELD_NUMBER: _ClassVar[int]
    RATINGS_FIELD_NUMBER: _ClassVar[int]
    LEDGER_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    AGGREGATES_FIELD_NUMBER: _ClassVar[int]
    DESIGN_REPUTATION_FIELD_NUMBER: _ClassVar[int]
    PARTICIPATION_FIELD_NUMBER: _ClassVar[int]
    VALUE_EQUATION_FIELD_NUMBER: _ClassVar[int]
    FABRICATION_COUNT_FIELD_NUMBER: _ClassVar[int]
    LADDER_FIELD_NUMBER: _ClassVar[int]
    design: str
    license: str
    revision_count: int
    contributors: _containers.RepeatedCompositeFieldContainer[Contributor]
    lineage: _containers.RepeatedCompositeFieldContainer[LineageEdge]
    fabrications: _containers.RepeatedCompositeFieldContainer[Fabrication]
    ratings: _containers.RepeatedCompositeFieldContainer[_common_pb2.Rating]
    ledger: _containers.RepeatedCompositeFieldContainer[LedgerEntry]
    attributions: _containers.RepeatedCompositeFieldContainer[_common_pb2.Attribution]
    aggregates: _containers.RepeatedCompositeFieldContainer[PrintAggregate]
    design_reputation: Reputation
    participation: str
    value_equation: ValueEquation
    fabrication_count: int
    ladder: _containers.RepeatedCompositeFieldContainer[LadderStep]
    def __init__(self, design: _Optional[str] = ..., license: _Optional[str] = ..., revision_count: _Optional[int] = ..., contributors: _Optional[_Iterable[_Union[Contributor, _Mapping]]] = ..., lineage: _Optional[_Iterable[_Union[LineageEdge, _Mapping]]] = ..., fabrications: _Optional[_Iterable[_Union[Fabrication, _Mapping]]] = ..., ratings: _Optional[_Iterable[_Union[_common_pb2.Rating, _Mapping]]] = ..., ledger: _Optional[_Iterable[_Union[LedgerEntry, _Mapping]]] = ..., attributions: _Optional[_Iterable[_Union[_common_pb2.Attribution, _Mapping]]] = ..., aggregates: _Optional[_Iterable[_Union[PrintAggregate, _Mapping]]] = ..., design_reputation: _Optional[_Union[Reputation, _Mapping]] = ..., participation: _Optional[str] = ..., value_equation: _Optional[_Union[ValueEquation, _Mapping]] = ..., fabrication_count: _Optional[int] = ..., ladder: _Optional[_Iterable[_Union[LadderStep, _Mapping]]] = ...) -> None: ...

class LadderStep(_message.Message):
    __slots__ = ("name", "rung", "contributions")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RUNG_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    rung: str
    contributions: int
    def __init__(self, name: _Optional[str] = ..., rung: _Optional[str] = ..., contributions: _Optional[int] = ...) -> None: ...

class ExportRequest(_message.Message):
    __slots__ = ("design", "revision_id", "format")
    DESIGN_FIELD_NUMBER: _ClassVar[int]
    REVISION_ID_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    design: str
    revision_id: str
    format: ExportFormat
    def __init__(self, design: _Optional[str] = ..., revision_id: _Optional[str] = ..., format: _Optional[_Union[ExportFormat, str]] = ...) -> None: ...

class ExportResponse(_message.Message):
    __slots__ = ("media_type", "document", "total_bytes")
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    media_type: str
    document: bytes
    total_bytes: int
    def __init__(self, media_type: _Optional[str] = ..., document: _Optional[bytes] = ..., total_bytes: _Optional[int] = ...) -> None: ...
