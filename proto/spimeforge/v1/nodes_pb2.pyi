import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from spimeforge.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobLocalState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_LOCAL_STATE_UNSPECIFIED: _ClassVar[JobLocalState]
    JOB_LOCAL_STATE_PREPARING: _ClassVar[JobLocalState]
    JOB_LOCAL_STATE_READY: _ClassVar[JobLocalState]
    JOB_LOCAL_STATE_PRINTING: _ClassVar[JobLocalState]
    JOB_LOCAL_STATE_PAUSED: _ClassVar[JobLocalState]
    JOB_LOCAL_STATE_FINISHED_AWAITING_BED_CLEAR: _ClassVar[JobLocalState]
    JOB_LOCAL_STATE_DONE: _ClassVar[JobLocalState]
    JOB_LOCAL_STATE_FAILED: _ClassVar[JobLocalState]
    JOB_LOCAL_STATE_CANCELLED: _ClassVar[JobLocalState]
    JOB_LOCAL_STATE_INTERRUPTED: _ClassVar[JobLocalState]

class PrinterPhase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRINTER_PHASE_UNSPECIFIED: _ClassVar[PrinterPhase]
    PRINTER_PHASE_IDLE: _ClassVar[PrinterPhase]
    PRINTER_PHASE_PRINTING: _ClassVar[PrinterPhase]
    PRINTER_PHASE_PAUSED: _ClassVar[PrinterPhase]
    PRINTER_PHASE_ERROR: _ClassVar[PrinterPhase]
    PRINTER_PHASE_MAINTENANCE: _ClassVar[PrinterPhase]
    PRINTER_PHASE_OFFLINE: _ClassVar[PrinterPhase]

class DeclineReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECLINE_REASON_UNSPECIFIED: _ClassVar[DeclineReason]
    DECLINE_REASON_NO_CAPACITY: _ClassVar[DeclineReason]
    DECLINE_REASON_NOT_PRINTABLE: _ClassVar[DeclineReason]
    DECLINE_REASON_MATERIAL_UNAVAILABLE: _ClassVar[DeclineReason]
    DECLINE_REASON_DEADLINE: _ClassVar[DeclineReason]
    DECLINE_REASON_OPERATOR_DECLINED: _ClassVar[DeclineReason]

class EventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_KIND_UNSPECIFIED: _ClassVar[EventKind]
    EVENT_KIND_DOWNLOADED: _ClassVar[EventKind]
    EVENT_KIND_PRINTABILITY_OK: _ClassVar[EventKind]
    EVENT_KIND_PRINTABILITY_FAILED: _ClassVar[EventKind]
    EVENT_KIND_SLICED: _ClassVar[EventKind]
    EVENT_KIND_STARTED: _ClassVar[EventKind]
    EVENT_KIND_PROGRESS: _ClassVar[EventKind]
    EVENT_KIND_PAUSED: _ClassVar[EventKind]
    EVENT_KIND_RESUMED: _ClassVar[EventKind]
    EVENT_KIND_FAILED: _ClassVar[EventKind]
    EVENT_KIND_COMPLETED: _ClassVar[EventKind]
    EVENT_KIND_BED_CLEARED: _ClassVar[EventKind]
    EVENT_KIND_CANCELLED: _ClassVar[EventKind]
    EVENT_KIND_INTERRUPTED: _ClassVar[EventKind]
    EVENT_KIND_OUTCOME: _ClassVar[EventKind]

class Desired(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DESIRED_UNSPECIFIED: _ClassVar[Desired]
    DESIRED_RUN: _ClassVar[Desired]
    DESIRED_HOLD: _ClassVar[Desired]
    DESIRED_CANCEL: _ClassVar[Desired]
    DESIRED_FORGET: _ClassVar[Desired]
JOB_LOCAL_STATE_UNSPECIFIED: JobLocalState
JOB_LOCAL_STATE_PREPARING: JobLocalState
JOB_LOCAL_STATE_READY: JobLocalState
JOB_LOCAL_STATE_PRINTING: JobLocalState
JOB_LOCAL_STATE_PAUSED: JobLocalState
JOB_LOCAL_STATE_FINISHED_AWAITING_BED_CLEAR: JobLocalState
JOB_LOCAL_STATE_DONE: JobLocalState
JOB_LOCAL_STATE_FAILED: JobLocalState
JOB_LOCAL_STATE_CANCELLED: JobLocalState
JOB_LOCAL_STATE_INTERRUPTED: JobLocalState
PRINTER_PHASE_UNSPECIFIED: PrinterPhase
PRINTER_PHASE_IDLE: PrinterPhase
PRINTER_PHASE_PRINTING: PrinterPhase
PRINTER_PHASE_PAUSED: PrinterPhase
PRINTER_PHASE_ERROR: PrinterPhase
PRINTER_PHASE_MAINTENANCE: PrinterPhase
PRINTER_PHASE_OFFLINE: PrinterPhase
DECLINE_REASON_UNSPECIFIED: DeclineReason
DECLINE_REASON_NO_CAPACITY: DeclineReason
DECLINE_REASON_NOT_PRINTABLE: DeclineReason
DECLINE_REASON_MATERIAL_UNAVAILABLE: DeclineReason
DECLINE_REASON_DEADLINE: DeclineReason
DECLINE_REASON_OPERATOR_DECLINED: DeclineReason
EVENT_KIND_UNSPECIFIED: EventKind
EVENT_KIND_DOWNLOADED: EventKind
EVENT_KIND_PRINTABILITY_OK: EventKind
EVENT_KIND_PRINTABILITY_FAILED: EventKind
EVENT_KIND_SLICED: EventKind
EVENT_KIND_STARTED: EventKind
EVENT_KIND_PROGRESS: EventKind
EVENT_KIND_PAUSED: EventKind
EVENT_KIND_RESUMED: EventKind
EVENT_KIND_FAILED: EventKind
EVENT_KIND_COMPLETED: EventKind
EVENT_KIND_BED_CLEARED: EventKind
EVENT_KIND_CANCELLED: EventKind
EVENT_KIND_INTERRUPTED: EventKind
EVENT_KIND_OUTCOME: EventKind
DESIRED_UNSPECIFIED: Desired
DESIRED_RUN: Desired
DESIRED_HOLD: Desired
DESIRED_CANCEL: Desired
DESIRED_FORGET: Desired

class EnrollRequest(_message.Message):
    __slots__ = ("enrollment_token", "agent_version")
    ENROLLMENT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    enrollment_token: str
    agent_version: str
    def __init__(self, enrollment_token: _Optional[str] = ..., agent_version: _Optional[str] = ...) -> None: ...

class EnrollResponse(_message.Message):
    __slots__ = ("node", "token")
    NODE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    node: str
    token: str
    def __init__(self, node: _Optional[str] = ..., token: _Optional[str] = ...) -> None: ...

class DownloadArtifactRequest(_message.Message):
    __slots__ = ("sha256", "offset")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    offset: int
    def __init__(self, sha256: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class PutArtifactResponse(_message.Message):
    __slots__ = ("sha256", "stored_bytes", "already_present")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    STORED_BYTES_FIELD_NUMBER: _ClassVar[int]
    ALREADY_PRESENT_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    stored_bytes: int
    already_present: bool
    def __init__(self, sha256: _Optional[str] = ..., stored_bytes: _Optional[int] = ..., already_present: _Optional[bool] = ...) -> None: ...

class AgentMsg(_message.Message):
    __slots__ = ("hello", "heartbeat", "offer_reply", "start_request", "job_event", "ack", "printer_changed")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    OFFER_REPLY_FIELD_NUMBER: _ClassVar[int]
    START_REQUEST_FIELD_NUMBER: _ClassVar[int]
    JOB_EVENT_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    PRINTER_CHANGED_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    heartbeat: Heartbeat
    offer_reply: OfferReply
    start_request: StartRequest
    job_event: JobEvent
    ack: CommandAck
    printer_changed: PrinterChanged
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., offer_reply: _Optional[_Union[OfferReply, _Mapping]] = ..., start_request: _Optional[_Union[StartRequest, _Mapping]] = ..., job_event: _Optional[_Union[JobEvent, _Mapping]] = ..., ack: _Optional[_Union[CommandAck, _Mapping]] = ..., printer_changed: _Optional[_Union[PrinterChanged, _Mapping]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("agent_id", "agent_version", "last_hub_seq_applied", "printers", "jobs", "location", "latitude", "longitude")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    LAST_HUB_SEQ_APPLIED_FIELD_NUMBER: _ClassVar[int]
    PRINTERS_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    LATITUDE_FIELD_NUMBER: _ClassVar[int]
    LONGITUDE_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    agent_version: str
    last_hub_seq_applied: int
    printers: _containers.RepeatedCompositeFieldContainer[PrinterState]
    jobs: _containers.RepeatedCompositeFieldContainer[HeldJob]
    location: str
    latitude: float
    longitude: float
    def __init__(self, agent_id: _Optional[str] = ..., agent_version: _Optional[str] = ..., last_hub_seq_applied: _Optional[int] = ..., printers: _Optional[_Iterable[_Union[PrinterState, _Mapping]]] = ..., jobs: _Optional[_Iterable[_Union[HeldJob, _Mapping]]] = ..., location: _Optional[str] = ..., latitude: _Optional[float] = ..., longitude: _Optional[float] = ...) -> None: ...

class HeldJob(_message.Message):
    __slots__ = ("job_id", "lease_epoch", "state", "last_agent_seq", "printer_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_EPOCH_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LAST_AGENT_SEQ_FIELD_NUMBER: _ClassVar[int]
    PRINTER_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    lease_epoch: int
    state: JobLocalState
    last_agent_seq: int
    printer_id: str
    def __init__(self, job_id: _Optional[str] = ..., lease_epoch: _Optional[int] = ..., state: _Optional[_Union[JobLocalState, str]] = ..., last_agent_seq: _Optional[int] = ..., printer_id: _Optional[str] = ...) -> None: ...

class PrinterState(_message.Message):
    __slots__ = ("printer_id", "model", "build_volume_mm", "nozzle_diameter_mm", "materials", "loaded_color", "phase", "bed_clear", "queue_depth", "hotend_c", "bed_c", "rate_per_hour", "rate_per_gram", "slicer_profile", "accepting")
    PRINTER_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BUILD_VOLUME_MM_FIELD_NUMBER: _ClassVar[int]
    NOZZLE_DIAMETER_MM_FIELD_NUMBER: _ClassVar[int]
    MATERIALS_FIELD_NUMBER: _ClassVar[int]
    LOADED_COLOR_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    BED_CLEAR_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    HOTEND_C_FIELD_NUMBER: _ClassVar[int]
    BED_C_FIELD_NUMBER: _ClassVar[int]
    RATE_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    RATE_PER_GRAM_FIELD_NUMBER: _ClassVar[int]
    SLICER_PROFILE_FIELD_NUMBER: _ClassVar[int]
    ACCEPTING_FIELD_NUMBER: _ClassVar[int]
    printer_id: str
    model: str
    build_volume_mm: _common_pb2.Vector3
    nozzle_diameter_mm: float
    materials: _containers.RepeatedScalarFieldContainer[str]
    loaded_color: str
    phase: PrinterPhase
    bed_clear: bool
    queue_depth: int
    hotend_c: float
    bed_c: float
    rate_per_hour: _common_pb2.Money
    rate_per_gram: _common_pb2.Money
    slicer_profile: str
    accepting: bool
    def __init__(self, printer_id: _Optional[str] = ..., model: _Optional[str] = ..., build_volume_mm: _Optional[_Union[_common_pb2.Vector3, _Mapping]] = ..., nozzle_diameter_mm: _Optional[float] = ..., materials: _Optional[_Iterable[str]] = ..., loaded_color: _Optional[str] = ..., phase: _Optional[_Union[PrinterPhase, str]] = ..., bed_clear: _Optional[bool] = ..., queue_depth: _Optional[int] = ..., hotend_c: _Optional[float] = ..., bed_c: _Optional[float] = ..., rate_per_hour: _Optional[_Union[_common_pb2.Money, _Mapping]] = ..., rate_per_gram: _Optional[_Union[_common_pb2.Money, _Mapping]] = ..., slicer_profile: _Optional[str] = ..., accepting: _Optional[bool] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("printers", "progress")
    PRINTERS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    printers: _containers.RepeatedCompositeFieldContainer[PrinterState]
    progress: _containers.RepeatedCompositeFieldContainer[JobProgress]
    def __init__(self, printers: _Optional[_Iterable[_Union[PrinterState, _Mapping]]] = ..., progress: _Optional[_Iterable[_Union[JobProgress, _Mapping]]] = ...) -> None: ...

class JobProgress(_message.Message):
    __slots__ = ("job_id", "lease_epoch", "percent", "layer", "eta")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_EPOCH_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    ETA_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    lease_epoch: int
    percent: float
    layer: int
    eta: _timestamp_pb2.Timestamp
    def __init__(self, job_id: _Optional[str] = ..., lease_epoch: _Optional[int] = ..., percent: _Optional[float] = ..., layer: _Optional[int] = ..., eta: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class OfferReply(_message.Message):
    __slots__ = ("offer_id", "accept", "reason", "detail", "est_print_seconds", "est_material_g", "reports")
    OFFER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    EST_PRINT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    EST_MATERIAL_G_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    offer_id: str
    accept: bool
    reason: DeclineReason
    detail: str
    est_print_seconds: int
    est_material_g: float
    reports: _containers.RepeatedCompositeFieldContainer[_common_pb2.PrintabilityReport]
    def __init__(self, offer_id: _Optional[str] = ..., accept: _Optional[bool] = ..., reason: _Optional[_Union[DeclineReason, str]] = ..., detail: _Optional[str] = ..., est_print_seconds: _Optional[int] = ..., est_material_g: _Optional[float] = ..., reports: _Optional[_Iterable[_Union[_common_pb2.PrintabilityReport, _Mapping]]] = ...) -> None: ...

class StartRequest(_message.Message):
    __slots__ = ("job_id", "lease_epoch", "printer_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_EPOCH_FIELD_NUMBER: _ClassVar[int]
    PRINTER_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    lease_epoch: int
    printer_id: str
    def __init__(self, job_id: _Optional[str] = ..., lease_epoch: _Optional[int] = ..., printer_id: _Optional[str] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("agent_seq", "job_id", "lease_epoch", "kind", "at", "data", "artifact_sha256")
    class DataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    AGENT_SEQ_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_EPOCH_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_SHA256_FIELD_NUMBER: _ClassVar[int]
    agent_seq: int
    job_id: str
    lease_epoch: int
    kind: EventKind
    at: _timestamp_pb2.Timestamp
    data: _containers.ScalarMap[str, str]
    artifact_sha256: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, agent_seq: _Optional[int] = ..., job_id: _Optional[str] = ..., lease_epoch: _Optional[int] = ..., kind: _Optional[_Union[EventKind, str]] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., data: _Optional[_Mapping[str, str]] = ..., artifact_sha256: _Optional[_Iterable[str]] = ...) -> None: ...

class CommandAck(_message.Message):
    __slots__ = ("hub_seq",)
    HUB_SEQ_FIELD_NUMBER: _ClassVar[int]
    hub_seq: int
    def __init__(self, hub_seq: _Optional[int] = ...) -> None: ...

class PrinterChanged(_message.Message):
    __slots__ = ("printer",)
    PRINTER_FIELD_NUMBER: _ClassVar[int]
    printer: PrinterState
    def __init__(self, printer: _Optional[_Union[PrinterState, _Mapping]] = ...) -> None: ...

class HubMsg(_message.Message):
    __slots__ = ("hub_seq", "welcome", "offer", "assigned", "start_granted", "start_denied", "cancel", "hold", "event_ack", "drain", "superseded", "ping")
    HUB_SEQ_FIELD_NUMBER: _ClassVar[int]
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    OFFER_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_FIELD_NUMBER: _ClassVar[int]
    START_GRANTED_FIELD_NUMBER: _ClassVar[int]
    START_DENIED_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    HOLD_FIELD_NUMBER: _ClassVar[int]
    EVENT_ACK_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    SUPERSEDED_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    hub_seq: int
    welcome: Welcome
    offer: JobOffer
    assigned: Assigned
    start_granted: StartGranted
    start_denied: StartDenied
    cancel: Cancel
    hold: Hold
    event_ack: EventAck
    drain: Drain
    superseded: Superseded
    ping: Ping
    def __init__(self, hub_seq: _Optional[int] = ..., welcome: _Optional[_Union[Welcome, _Mapping]] = ..., offer: _Optional[_Union[JobOffer, _Mapping]] = ..., assigned: _Optional[_Union[Assigned, _Mapping]] = ..., start_granted: _Optional[_Union[StartGranted, _Mapping]] = ..., start_denied: _Optional[_Union[StartDenied, _Mapping]] = ..., cancel: _Optional[_Union[Cancel, _Mapping]] = ..., hold: _Optional[_Union[Hold, _Mapping]] = ..., event_ack: _Optional[_Union[EventAck, _Mapping]] = ..., drain: _Optional[_Union[Drain, _Mapping]] = ..., superseded: _Optional[_Union[Superseded, _Mapping]] = ..., ping: _Optional[_Union[Ping, _Mapping]] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("session_epoch", "last_agent_seq_committed", "desired", "heartbeat_interval_s", "lease_ttl_s")
    SESSION_EPOCH_FIELD_NUMBER: _ClassVar[int]
    LAST_AGENT_SEQ_COMMITTED_FIELD_NUMBER: _ClassVar[int]
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    LEASE_TTL_S_FIELD_NUMBER: _ClassVar[int]
    session_epoch: int
    last_agent_seq_committed: int
    desired: _containers.RepeatedCompositeFieldContainer[DesiredJob]
    heartbeat_interval_s: int
    lease_ttl_s: int
    def __init__(self, session_epoch: _Optional[int] = ..., last_agent_seq_committed: _Optional[int] = ..., desired: _Optional[_Iterable[_Union[DesiredJob, _Mapping]]] = ..., heartbeat_interval_s: _Optional[int] = ..., lease_ttl_s: _Optional[int] = ...) -> None: ...

class DesiredJob(_message.Message):
    __slots__ = ("job_id", "lease_epoch", "desired")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_EPOCH_FIELD_NUMBER: _ClassVar[int]
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    lease_epoch: int
    desired: Desired
    def __init__(self, job_id: _Optional[str] = ..., lease_epoch: _Optional[int] = ..., desired: _Optional[_Union[Desired, str]] = ...) -> None: ...

class ArtifactRef(_message.Message):
    __slots__ = ("sha256", "size", "kind", "path")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    size: int
    kind: str
    path: str
    def __init__(self, sha256: _Optional[str] = ..., size: _Optional[int] = ..., kind: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class JobOffer(_message.Message):
    __slots__ = ("offer_id", "job_id", "design", "revision_id", "artifacts", "parameters", "material", "color", "quantity", "bbox_mm", "deadline", "offer_expires_at", "payout", "attributions", "printer_id", "lease_epoch", "part")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    OFFER_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DESIGN_FIELD_NUMBER: _ClassVar[int]
    REVISION_ID_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    MATERIAL_FIELD_NUMBER: _ClassVar[int]
    COLOR_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    BBOX_MM_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    OFFER_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    PAYOUT_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    PRINTER_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_EPOCH_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    offer_id: str
    job_id: str
    design: str
    revision_id: str
    artifacts: _containers.RepeatedCompositeFieldContainer[ArtifactRef]
    parameters: _containers.ScalarMap[str, str]
    material: str
    color: str
    quantity: int
    bbox_mm: _common_pb2.Vector3
    deadline: _timestamp_pb2.Timestamp
    offer_expires_at: _timestamp_pb2.Timestamp
    payout: _common_pb2.Money
    attributions: _containers.RepeatedCompositeFieldContainer[_common_pb2.Attribution]
    printer_id: str
    lease_epoch: int
    part: str
    def __init__(self, offer_id: _Optional[str] = ..., job_id: _Optional[str] = ..., design: _Optional[str] = ..., revision_id: _Optional[str] = ..., artifacts: _Optional[_Iterable[_Union[ArtifactRef, _Mapping]]] = ..., parameters: _Optional[_Mapping[str, str]] = ..., material: _Optional[str] = ..., color: _Optional[str] = ..., quantity: _Optional[int] = ..., bbox_mm: _Optional[_Union[_common_pb2.Vector3, _Mapping]] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., offer_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., payout: _Optional[_Union[_common_pb2.Money, _Mapping]] = ..., attributions: _Optional[_Iterable[_Union[_common_pb2.Attribution, _Mapping]]] = ..., printer_id: _Optional[str] = ..., lease_epoch: _Optional[int] = ..., part: _Optional[str] = ...) -> None: ...

class Assigned(_message.Message):
    __slots__ = ("job_id", "offer_id", "lease_epoch")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    OFFER_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_EPOCH_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    offer_id: str
    lease_epoch: int
    def __init__(self, job_id: _Optional[str] = ..., offer_id: _Optional[str] = ..., lease_epoch: _Optional[int] = ...) -> None: ...

class StartGranted(_message.Message):
    __slots__ = ("job_id", "lease_epoch")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_EPOCH_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    lease_epoch: int
    def __init__(self, job_id: _Optional[str] = ..., lease_epoch: _Optional[int] = ...) -> None: ...

class StartDenied(_message.Message):
    __slots__ = ("job_id", "lease_epoch", "reason")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_EPOCH_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    lease_epoch: int
    reason: str
    def __init__(self, job_id: _Optional[str] = ..., lease_epoch: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class Cancel(_message.Message):
    __slots__ = ("job_id", "lease_epoch", "reason")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_EPOCH_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    lease_epoch: int
    reason: str
    def __init__(self, job_id: _Optional[str] = ..., lease_epoch: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class Hold(_message.Message):
    __slots__ = ("job_id", "lease_epoch", "reason")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_EPOCH_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    lease_epoch: int
    reason: str
    def __init__(self, job_id: _Optional[str] = ..., lease_epoch: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class EventAck(_message.Message):
    __slots__ = ("agent_seq",)
    AGENT_SEQ_FIELD_NUMBER: _ClassVar[int]
    agent_seq: int
    def __init__(self, agent_seq: _Optional[int] = ...) -> None: ...

class Drain(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class Superseded(_message.Message):
    __slots__ = ("new_session_epoch",)
    NEW_SESSION_EPOCH_FIELD_NUMBER: _ClassVar[int]
    new_session_epoch: int
    def __init__(self, new_session_epoch: _Optional[int] = ...) -> None: ...

class Ping(_message.Message):
    __slots__ = ("sent_unix_ms",)
    SENT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    sent_unix_ms: int
    def __init__(self, sent_unix_ms: _Optional[int] = ...) -> None: ...
