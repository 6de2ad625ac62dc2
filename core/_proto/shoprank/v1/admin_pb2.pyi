from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StartRolloutRequest(_message.Message):
    __slots__ = ("model", "version", "percent", "shadow")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    percent: int
    shadow: bool
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., percent: _Optional[int] = ..., shadow: _Optional[bool] = ...) -> None: ...

class ShiftRolloutRequest(_message.Message):
    __slots__ = ("model", "percent")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    model: str
    percent: int
    def __init__(self, model: _Optional[str] = ..., percent: _Optional[int] = ...) -> None: ...

class ModelRequest(_message.Message):
    __slots__ = ("model", "reason")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    model: str
    reason: str
    def __init__(self, model: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class VersionWindow(_message.Message):
    __slots__ = ("version", "requests", "errors", "p99_ms")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    P99_MS_FIELD_NUMBER: _ClassVar[int]
    version: str
    requests: int
    errors: int
    p99_ms: float
    def __init__(self, version: _Optional[str] = ..., requests: _Optional[int] = ..., errors: _Optional[int] = ..., p99_ms: _Optional[float] = ...) -> None: ...

class RolloutEvent(_message.Message):
    __slots__ = ("time", "action", "version", "detail")
    TIME_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    time: float
    action: str
    version: str
    detail: str
    def __init__(self, time: _Optional[float] = ..., action: _Optional[str] = ..., version: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class RolloutStatus(_message.Message):
    __slots__ = ("model", "stable_version", "candidate_version", "mode", "percent", "loaded_versions", "windows", "shadow_agreement", "shadow_compared", "shadow_skipped", "history", "pinned", "candidate_manifest")
    class CandidateManifestEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STABLE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    LOADED_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    SHADOW_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    SHADOW_COMPARED_FIELD_NUMBER: _ClassVar[int]
    SHADOW_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    PINNED_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_MANIFEST_FIELD_NUMBER: _ClassVar[int]
    model: str
    stable_version: str
    candidate_version: str
    mode: str
    percent: int
    loaded_versions: _containers.RepeatedScalarFieldContainer[str]
    windows: _containers.RepeatedCompositeFieldContainer[VersionWindow]
    shadow_agreement: float
    shadow_compared: int
    shadow_skipped: int
    history: _containers.RepeatedCompositeFieldContainer[RolloutEvent]
    pinned: bool
    candidate_manifest: _containers.ScalarMap[str, str]
    def __init__(self, model: _Optional[str] = ..., stable_version: _Optional[str] = ..., candidate_version: _Optional[str] = ..., mode: _Optional[str] = ..., percent: _Optional[int] = ..., loaded_versions: _Optional[_Iterable[str]] = ..., windows: _Optional[_Iterable[_Union[VersionWindow, _Mapping]]] = ..., shadow_agreement: _Optional[float] = ..., shadow_compared: _Optional[int] = ..., shadow_skipped: _Optional[int] = ..., history: _Optional[_Iterable[_Union[RolloutEvent, _Mapping]]] = ..., pinned: _Optional[bool] = ..., candidate_manifest: _Optional[_Mapping[str, str]] = ...) -> None: ...

class RolloutStatusList(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[RolloutStatus]
    def __init__(self, models: _Optional[_Iterable[_Union[RolloutStatus, _Mapping]]] = ...) -> None: ...

class ProductRecord(_message.Message):
    __slots__ = ("product_id", "title", "description", "brand", "category", "department", "price", "stock", "image_url", "attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    BRAND_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    STOCK_FIELD_NUMBER: _ClassVar[int]
    IMAGE_URL_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    title: str
    description: str
    brand: str
    category: str
    department: str
    price: float
    stock: int
    image_url: str
    attributes: _containers.ScalarMap[str, str]
    def __init__(self, product_id: _Optional[str] = ..., title: _Optional[str] = ..., description: _Optional[str] = ..., brand: _Optional[str] = ..., category: _Optional[str] = ..., department: _Optional[str] = ..., price: _Optional[float] = ..., stock: _Optional[int] = ..., image_url: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class RecordError(_message.Message):
    __slots__ = ("index", "product_id", "message")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    index: int
    product_id: str
    message: str
    def __init__(self, index: _Optional[int] = ..., product_id: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class UpsertProductsResponse(_message.Message):
    __slots__ = ("received", "stored", "created", "reembedded", "fields_updated", "unchanged", "errors")
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    REEMBEDDED_FIELD_NUMBER: _ClassVar[int]
    FIELDS_UPDATED_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    received: int
    stored: int
    created: int
    reembedded: int
    fields_updated: int
    unchanged: int
    errors: _containers.RepeatedCompositeFieldContainer[RecordError]
    def __init__(self, received: _Optional[int] = ..., stored: _Optional[int] = ..., created: _Optional[int] = ..., reembedded: _Optional[int] = ..., fields_updated: _Optional[int] = ..., unchanged: _Optional[int] = ..., errors: _Optional[_Iterable[_Union[RecordError, _Mapping]]] = ...) -> None: ...

class DeleteProductsRequest(_message.Message):
    __slots__ = ("product_ids",)
    PRODUCT_IDS_FIELD_NUMBER: _ClassVar[int]
    product_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, product_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteProductsResponse(_message.Message):
    __slots__ = ("deleted", "not_found")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    NOT_FOUND_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    not_found: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, deleted: _Optional[int] = ..., not_found: _Optional[_Iterable[str]] = ...) -> None: ...

class GetProductRequest(_message.Message):
    __slots__ = ("product_id",)
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    def __init__(self, product_id: _Optional[str] = ...) -> None: ...
