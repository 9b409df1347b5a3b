from spimeforge.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OrderState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDER_STATE_UNSPECIFIED: _ClassVar[OrderState]
    ORDER_STATE_PLACED: _ClassVar[OrderState]
    ORDER_STATE_QUEUED: _ClassVar[OrderState]
    ORDER_STATE_ASSIGNED: _ClassVar[OrderState]
    ORDER_STATE_PRINTING: _ClassVar[OrderState]
    ORDER_STATE_PRINTED: _ClassVar[OrderState]
    ORDER_STATE_DELIVERED: _ClassVar[OrderState]
    ORDER_STATE_FAILED: _ClassVar[OrderState]
    ORDER_STATE_CANCELLED: _ClassVar[OrderState]
    ORDER_STATE_LOST_CONTACT: _ClassVar[OrderState]
    ORDER_STATE_OUTCOME_UNKNOWN: _ClassVar[OrderState]
ORDER_STATE_UNSPECIFIED: OrderState
ORDER_STATE_PLACED: OrderState
ORDER_STATE_QUEUED: OrderState
ORDER_STATE_ASSIGNED: OrderState
ORDER_STATE_PRINTING: OrderState
ORDER_STATE_PRINTED: OrderState
ORDER_STATE_DELIVERED: OrderState
ORDER_STATE_FAILED: OrderState
ORDER_STATE_CANCELLED: OrderState
ORDER_STATE_LOST_CONTACT: OrderState
ORDER_STATE_OUTCOME_UNKNOWN: OrderState

class OrderSpec(_message.Message):
    __slots__ = ("design", "revision_id", "parameters", "material", "color", "quantity", "near", "paid", "max_km")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DESIGN_FIELD_NUMBER: _ClassVar[int]
    REVISION_ID_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    MATERIAL_FIELD_NUMBER: _ClassVar[int]
    COLOR_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    NEAR_FIELD_NUMBER: _ClassVar[int]
    PAID_FIELD_NUMBER: _ClassVar[int]
    MAX_KM_FIELD_NUMBER: _ClassVar[int]
    design: str
    revision_id: str
    parameters: _containers.ScalarMap[str, str]
    material: str
    color: str
    quantity: int
    near: str
    paid: bool
    max_km: float
    def __init__(self, design: _Optional[str] = ..., revision_id: _Optional[str] = ..., parameters: _Optional[_Mapping[str, str]] = ..., material: _Optional[str] = ..., color: _Optional[str] = ..., quantity: _Optional[int] = ..., near: _Optional[str] = ..., paid: _Optional[bool] = ..., max_km: _Optional[float] = ...) -> None: ...

class QuoteOption(_message.Message):
    __slots__ = ("option", "node", "printer", "printer_model", "price", "material_cost", "machine_cost", "fees", "contribution", "estimated_seconds", "filament_g", "has_distance", "distance_km", "reputation", "ratings", "earliest_start", "correction", "history_prints", "sliced_seconds")
    OPTION_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    PRINTER_FIELD_NUMBER: _ClassVar[int]
    PRINTER_MODEL_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    MATERIAL_COST_FIELD_NUMBER: _ClassVar[int]
    MACHINE_COST_FIELD_NUMBER: _ClassVar[int]
    FEES_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FILAMENT_G_FIELD_NUMBER: _ClassVar[int]
    HAS_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_KM_FIELD_NUMBER: _ClassVar[int]
    REPUTATION_FIELD_NUMBER: _ClassVar[int]
    RATINGS_FIELD_NUMBER: _ClassVar[int]
    EARLIEST_START_FIELD_NUMBER: _ClassVar[int]
    CORRECTION_FIELD_NUMBER: _ClassVar[int]
    HISTORY_PRINTS_FIELD_NUMBER: _ClassVar[int]
    SLICED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    option: int
    node: str
    printer: str
    printer_model: str
    price: _common_pb2.Money
    material_cost: _common_pb2.Money
    machine_cost: _common_pb2.Money
    fees: _common_pb2.Money
    contribution: _common_pb2.Money
    estimated_seconds: int
    filament_g: float
    has_distance: bool
    distance_km: float
    reputation: float
    ratings: int
    earliest_start: str
    correction: str
    history_prints: int
    sliced_seconds: int
    def __init__(self, option: _Optional[int] = ..., node: _Optional[str] = ..., printer: _Optional[str] = ..., printer_model: _Optional[str] = ..., price: _Optional[_Union[_common_pb2.Money, _Mapping]] = ..., material_cost: _Optional[_Union[_common_pb2.Money, _Mapping]] = ..., machine_cost: _Optional[_Union[_common_pb2.Money, _Mapping]] = ..., fees: _Optional[_Union[_common_pb2.Money, _Mapping]] = ..., contribution: _Optional[_Union[_common_pb2.Money, _Mapping]] = ..., estimated_seconds: _Optional[int] = ..., filament_g: _Optional[float] = ..., has_distance: _Optional[bool] = ..., distance_km: _Optional[float] = ..., reputation: _Optional[float] = ..., ratings: _Optional[int] = ..., earliest_start: _Optional[str] = ..., correction: _Optional[str] = ..., history_prints: _Optional[int] = ..., sliced_seconds: _Optional[int] = ...) -> None: ...

class QuoteRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: OrderSpec
    def __init__(self, spec: _Optional[_Union[OrderSpec, _Mapping]] = ...) -> None: ...

class QuoteResponse(_message.Message):
    __slots__ = ("fabricable", "refusal", "price", "estimated_seconds", "estimated_filament_g", "candidate_nodes", "attributions", "quote_id", "expires_at", "revision_id", "options", "sliced_from_cache")
    FABRICABLE_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_FILAMENT_G_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_NODES_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    QUOTE_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    REVISION_ID_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    SLICED_FROM_CACHE_FIELD_NUMBER: _ClassVar[int]
    fabricable: bool
    refusal: str
    price: _common_pb2.Money
    estimated_seconds: int
    estimated_filament_g: float
    candidate_nodes: _containers.RepeatedScalarFieldContainer[str]
    attributions: _containers.RepeatedCompositeFieldContainer[_common_pb2.Attribution]
    quote_id: str
    expires_at: str
    revision_id: str
    options: _containers.RepeatedCompositeFieldContainer[QuoteOption]
    sliced_from_cache: bool
    def __init__(self, fabricable: _Optional[bool] = ..., refusal: _Optional[str] = ..., price: _Optional[_Union[_common_pb2.Money, _Mapping]] = ..., estimated_seconds: _Optional[int] = ..., estimated_filament_g: _Optional[float] = ..., candidate_nodes: _Optional[_Iterable[str]] = ..., attributions: _Optional[_Iterable[_Union[_common_pb2.Attribution, _Mapping]]] = ..., quote_id: _Optional[str] = ..., expires_at: _Optional[str] = ..., revision_id: _Optional[str] = ..., options: _Optional[_Iterable[_Union[QuoteOption, _Mapping]]] = ..., sliced_from_cache: _Optional[bool] = ...) -> None: ...

class Order(_message.Message):
    __slots__ = ("id", "customer", "spec", "state", "node", "printer", "job_id", "progress_percent", "layer", "price", "created_at", "updated_at", "failure_reason", "ratings", "attributions", "objects", "partial_cost", "estimated_seconds", "quote_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    PRINTER_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_PERCENT_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    RATINGS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_COST_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    QUOTE_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    customer: str
    spec: OrderSpec
    state: OrderState
    node: str
    printer: str
    job_id: str
    progress_percent: float
    layer: int
    price: _common_pb2.Money
    created_at: str
    updated_at: str
    failure_reason: str
    ratings: _containers.RepeatedCompositeFieldContainer[_common_pb2.Rating]
    attributions: _containers.RepeatedCompositeFieldContainer[_common_pb2.Attribution]
    objects: _containers.RepeatedCompositeFieldContainer[OrderObject]
    partial_cost: _common_pb2.Money
    estimated_seconds: int
    quote_id: str
    def __init__(self, id: _Optional[str] = ..., customer: _Optional[str] = ..., spec: _Optional[_Union[OrderSpec, _Mapping]] = ..., state: _Optional[_Union[OrderState, str]] = ..., node: _Optional[str] = ..., printer: _Optional[str] = ..., job_id: _Optional[str] = ..., progress_percent: _Optional[float] = ..., layer: _Optional[int] = ..., price: _Optional[_Union[_common_pb2.Money, _Mapping]] = ..., created_at: _Optional[str] = ..., updated_at: _Optional[str] = ..., failure_reason: _Optional[str] = ..., ratings: _Optional[_Iterable[_Union[_common_pb2.Rating, _Mapping]]] = ..., attributions: _Optional[_Iterable[_Union[_common_pb2.Attribution, _Mapping]]] = ..., objects: _Optional[_Iterable[_Union[OrderObject, _Mapping]]] = ..., partial_cost: _Optional[_Union[_common_pb2.Money, _Mapping]] = ..., estimated_seconds: _Optional[int] = ..., quote_id: _Optional[str] = ...) -> None: ...

class OrderObject(_message.Message):
    __slots__ = ("incarnation_id", "qr_payload", "job_id", "state", "progress_percent", "layer", "node", "printer")
    INCARNATION_ID_FIELD_NUMBER: _ClassVar[int]
    QR_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_PERCENT_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    PRINTER_FIELD_NUMBER: _ClassVar[int]
    incarnation_id: str
    qr_payload: str
    job_id: str
    state: str
    progress_percent: float
    layer: int
    node: str
    printer: str
    def __init__(self, incarnation_id: _Optional[str] = ..., qr_payload: _Optional[str] = ..., job_id: _Optional[str] = ..., state: _Optional[str] = ..., progress_percent: _Optional[float] = ..., layer: _Optional[int] = ..., node: _Optional[str] = ..., printer: _Optional[str] = ...) -> None: ...

class PlaceOrderRequest(_message.Message):
    __slots__ = ("spec", "idempotency_key", "quote_id", "option", "best")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    QUOTE_ID_FIELD_NUMBER: _ClassVar[int]
    OPTION_FIELD_NUMBER: _ClassVar[int]
    BEST_FIELD_NUMBER: _ClassVar[int]
    spec: OrderSpec
    idempotency_key: str
    quote_id: str
    option: int
    best: str
    def __init__(self, spec: _Optional[_Union[OrderSpec, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., quote_id: _Optional[str] = ..., option: _Optional[int] = ..., best: _Optional[str] = ...) -> None: ...

class GetOrderRequest(_message.Message):
    __slots__ = ("order_id",)
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    def __init__(self, order_id: _Optional[str] = ...) -> None: ...

class ListOrdersRequest(_message.Message):
    __slots__ = ("page", "include_final")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_FINAL_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.PageRequest
    include_final: bool
    def __init__(self, page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ..., include_final: _Optional[bool] = ...) -> None: ...

class ListOrdersResponse(_message.Message):
    __slots__ = ("orders", "next_page_token")
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[Order]
    next_page_token: str
    def __init__(self, orders: _Optional[_Iterable[_Union[Order, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelOrderRequest(_message.Message):
    __slots__ = ("order_id", "reason")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    reason: str
    def __init__(self, order_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RateOrderRequest(_message.Message):
    __slots__ = ("order_id", "rating", "job_id")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    rating: _common_pb2.Rating
    job_id: str
    def __init__(self, order_id: _Optional[str] = ..., rating: _Optional[_Union[_common_pb2.Rating, _Mapping]] = ..., job_id: _Optional[str] = ...) -> None: ...

class GrantRequest(_message.Message):
    __slots__ = ("design", "revision_id", "scope", "node", "until", "signature", "statement")
    DESIGN_FIELD_NUMBER: _ClassVar[int]
    REVISION_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    STATEMENT_FIELD_NUMBER: _ClassVar[int]
    design: str
    revision_id: str
    scope: str
    node: str
    until: str
    signature: str
    statement: str
    def __init__(self, design: _Optional[str] = ..., revision_id: _Optional[str] = ..., scope: _Optional[str] = ..., node: _Optional[str] = ..., until: _Optional[str] = ..., signature: _Optional[str] = ..., statement: _Optional[str] = ...) -> None: ...

class GrantRecord(_message.Message):
    __slots__ = ("id", "design", "revision_id", "scope", "node", "until", "granted_by", "granted_at", "statement_sha256", "signature", "statement", "key_fingerprint", "revoked_at", "revoked_by", "revocation", "revocation_signature", "revocation_key_fingerprint")
    ID_FIELD_NUMBER: _ClassVar[int]
    DESIGN_FIELD_NUMBER: _ClassVar[int]
    REVISION_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    GRANTED_BY_FIELD_NUMBER: _ClassVar[int]
    GRANTED_AT_FIELD_NUMBER: _ClassVar[int]
    STATEMENT_SHA256_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    STATEMENT_FIELD_NUMBER: _ClassVar[int]
    KEY_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_BY_FIELD_NUMBER: _ClassVar[int]
    REVOCATION_FIELD_NUMBER: _ClassVar[int]
    REVOCATION_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    REVOCATION_KEY_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    id: str
    design: str
    revision_id: str
    scope: str
    node: str
    until: str
    granted_by: str
    granted_at: str
    statement_sha256: str
    signature: str
    statement: str
    key_fingerprint: str
    revoked_at: str
    revoked_by: str
    revocation: str
    revocation_signature: str
    revocation_key_fingerprint: str
    def __init__(self, id: _Optional[str] = ..., design: _Optional[str] = ..., revision_id: _Optional[str] = ..., scope: _Optional[str] = ..., node: _Optional[str] = ..., until: _Optional[str] = ..., granted_by: _Optional[str] = ..., granted_at: _Optional[str] = ..., statement_sha256: _Optional[str] = ..., signature: _Optional[str] = ..., statement: _Optional[str] = ..., key_fingerprint: _Optional[str] = ..., revoked_at: _Optional[str] = ..., revoked_by: _Optional[str] = ..., revocation: _Optional[str] = ..., revocation_signature: _Optional[str] = ..., revocation_key_fingerprint: _Optional[str] = ...) -> None: ...

class ListGrantsRequest(_message.Message):
    __slots__ = ("design", "page")
    DESIGN_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    design: str
    page: _common_pb2.PageRequest
    def __init__(self, design: _Optional[str] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class RevokeGrantRequest(_message.Message):
    __slots__ = ("grant_id", "signature", "statement")
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    STATEMENT_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    signature: str
    statement: str
    def __init__(self, grant_id: _Optional[str] = ..., signature: _Optional[str] = ..., statement: _Optional[str] = ...) -> None: ...

class GetGrantRequest(_message.Message):
    __slots__ = ("grant_id",)
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    def __init__(self, grant_id: _Optional[str] = ...) -> None: ...

class ListGrantsResponse(_message.Message):
    __slots__ = ("grants", "next_page_token")
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    grants: _containers.RepeatedCompositeFieldContainer[GrantRecord]
    next_page_token: str
    def __init__(self, grants: _Optional[_Iterable[_Union[GrantRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetIncarnationRequest(_message.Message):
    __slots__ = ("incarnation_id",)
    INCARNATION_ID_FIELD_NUMBER: _ClassVar[int]
    incarnation_id: str
    def __init__(self, incarnation_id: _Optional[str] = ...) -> None: ...

class Incarnation(_message.Message):
    __slots__ = ("incarnation_id", "order_id", "design", "revision_id", "parameters", "node", "printer", "material", "settings", "date", "state", "attributions")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class SettingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    INCARNATION_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    DESIGN_FIELD_NUMBER: _ClassVar[int]
    REVISION_ID_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    PRINTER_FIELD_NUMBER: _ClassVar[int]
    MATERIAL_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    DATE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    incarnation_id: str
    order_id: str
    design: str
    revision_id: str
    parameters: _containers.ScalarMap[str, str]
    node: str
    printer: str
    material: str
    settings: _containers.ScalarMap[str, str]
    date: str
    state: str
    attributions: _containers.RepeatedCompositeFieldContainer[_common_pb2.Attribution]
    def __init__(self, incarnation_id: _Optional[str] = ..., order_id: _Optional[str] = ..., design: _Optional[str] = ..., revision_id: _Optional[str] = ..., parameters: _Optional[_Mapping[str, str]] = ..., node: _Optional[str] = ..., printer: _Optional[str] = ..., material: _Optional[str] = ..., settings: _Optional[_Mapping[str, str]] = ..., date: _Optional[str] = ..., state: _Optional[str] = ..., attributions: _Optional[_Iterable[_Union[_common_pb2.Attribution, _Mapping]]] = ...) -> None: ...
