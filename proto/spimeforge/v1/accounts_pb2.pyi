from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_DESIGNER: _ClassVar[Role]
    ROLE_OPERATOR: _ClassVar[Role]
    ROLE_CUSTOMER: _ClassVar[Role]
    ROLE_ADMIN: _ClassVar[Role]
    ROLE_NODE: _ClassVar[Role]
ROLE_UNSPECIFIED: Role
ROLE_DESIGNER: Role
ROLE_OPERATOR: Role
ROLE_CUSTOMER: Role
ROLE_ADMIN: Role
ROLE_NODE: Role

class GetHubKeyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HubKey(_message.Message):
    __slots__ = ("public_key", "fingerprint")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    public_key: bytes
    fingerprint: str
    def __init__(self, public_key: _Optional[bytes] = ..., fingerprint: _Optional[str] = ...) -> None: ...

class RegisterKeyRequest(_message.Message):
    __slots__ = ("public_key", "signed_at", "proof")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    SIGNED_AT_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    public_key: bytes
    signed_at: str
    proof: bytes
    def __init__(self, public_key: _Optional[bytes] = ..., signed_at: _Optional[str] = ..., proof: _Optional[bytes] = ...) -> None: ...

class KeyRegistration(_message.Message):
    __slots__ = ("account", "public_key", "fingerprint", "registered_at", "revoked_at", "hub_signature", "as_of")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    HUB_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    account: str
    public_key: bytes
    fingerprint: str
    registered_at: str
    revoked_at: str
    hub_signature: bytes
    as_of: str
    def __init__(self, account: _Optional[str] = ..., public_key: _Optional[bytes] = ..., fingerprint: _Optional[str] = ..., registered_at: _Optional[str] = ..., revoked_at: _Optional[str] = ..., hub_signature: _Optional[bytes] = ..., as_of: _Optional[str] = ...) -> None: ...

class ListKeysRequest(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: str
    def __init__(self, account: _Optional[str] = ...) -> None: ...

class ListKeysResponse(_message.Message):
    __slots__ = ("keys", "hub_public_key")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    HUB_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[KeyRegistration]
    hub_public_key: bytes
    def __init__(self, keys: _Optional[_Iterable[_Union[KeyRegistration, _Mapping]]] = ..., hub_public_key: _Optional[bytes] = ...) -> None: ...

class RevokeKeyRequest(_message.Message):
    __slots__ = ("fingerprint", "effective_at", "account")
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_AT_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    fingerprint: str
    effective_at: str
    account: str
    def __init__(self, fingerprint: _Optional[str] = ..., effective_at: _Optional[str] = ..., account: _Optional[str] = ...) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Account(_message.Message):
    __slots__ = ("name", "role", "public_key")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    name: str
    role: Role
    public_key: str
    def __init__(self, name: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., public_key: _Optional[str] = ...) -> None: ...
