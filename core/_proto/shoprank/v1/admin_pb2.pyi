from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StartRolloutRequest(_message.Message):
    __slots__ = ("model", "version", "percent", "shadow", "interleave")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    INTERLEAVE_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    percent: int
    shadow: bool
    interleave: bool
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., percent: _Optional[int] = ..., shadow: _Optional[bool] = ..., interleave: _Optional[bool] = ...) -> None: ...

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
    __slots__ = ("model", "stable_version", "candidate_version", "mode", "percent", "loaded_versions", "windows", "shadow_agreement", "shadow_compared", "shadow_skipped", "history", "pinned", "candidate_manifest", "quality")
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
    QUALITY_FIELD_NUMBER: _ClassVar[int]
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
    quality: ExperimentStatus
    def __init__(self, model: _Optional[str] = ..., stable_version: _Optional[str] = ..., candidate_version: _Optional[str] = ..., mode: _Optional[str] = ..., percent: _Optional[int] = ..., loaded_versions: _Optional[_Iterable[str]] = ..., windows: _Optional[_Iterable[_Union[VersionWindow, _Mapping]]] = ..., shadow_agreement: _Optional[float] = ..., shadow_compared: _Optional[int] = ..., shadow_skipped: _Optional[int] = ..., history: _Optional[_Iterable[_Union[RolloutEvent, _Mapping]]] = ..., pinned: _Optional[bool] = ..., candidate_manifest: _Optional[_Mapping[str, str]] = ..., quality: _Optional[_Union[ExperimentStatus, _Mapping]] = ...) -> None: ...

class StartExperimentRequest(_message.Message):
    __slots__ = ("name", "control", "treatment", "method", "share")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONTROL_FIELD_NUMBER: _ClassVar[int]
    TREATMENT_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    name: str
    control: str
    treatment: str
    method: str
    share: float
    def __init__(self, name: _Optional[str] = ..., control: _Optional[str] = ..., treatment: _Optional[str] = ..., method: _Optional[str] = ..., share: _Optional[float] = ...) -> None: ...

class ExperimentRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ArmFigures(_message.Message):
    __slots__ = ("arm", "spec", "searches", "clicks_per_search", "clicks_per_search_low", "clicks_per_search_high", "purchases_per_search", "purchases_per_search_low", "purchases_per_search_high")
    ARM_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    SEARCHES_FIELD_NUMBER: _ClassVar[int]
    CLICKS_PER_SEARCH_FIELD_NUMBER: _ClassVar[int]
    CLICKS_PER_SEARCH_LOW_FIELD_NUMBER: _ClassVar[int]
    CLICKS_PER_SEARCH_HIGH_FIELD_NUMBER: _ClassVar[int]
    PURCHASES_PER_SEARCH_FIELD_NUMBER: _ClassVar[int]
    PURCHASES_PER_SEARCH_LOW_FIELD_NUMBER: _ClassVar[int]
    PURCHASES_PER_SEARCH_HIGH_FIELD_NUMBER: _ClassVar[int]
    arm: str
    spec: str
    searches: int
    clicks_per_search: float
    clicks_per_search_low: float
    clicks_per_search_high: float
    purchases_per_search: float
    purchases_per_search_low: float
    purchases_per_search_high: float
    def __init__(self, arm: _Optional[str] = ..., spec: _Optional[str] = ..., searches: _Optional[int] = ..., clicks_per_search: _Optional[float] = ..., clicks_per_search_low: _Optional[float] = ..., clicks_per_search_high: _Optional[float] = ..., purchases_per_search: _Optional[float] = ..., purchases_per_search_low: _Optional[float] = ..., purchases_per_search_high: _Optional[float] = ...) -> None: ...

class ExperimentStatus(_message.Message):
    __slots__ = ("name", "method", "control", "treatment", "share", "running", "started", "stopped", "decision", "log_ratio", "threshold", "shown", "wins", "losses", "ties", "treatment_share", "treatment_share_low", "treatment_share_high", "delta", "delta_low", "delta_high", "arms", "feedback_joined", "feedback_unjoined")
    NAME_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    CONTROL_FIELD_NUMBER: _ClassVar[int]
    TREATMENT_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    STOPPED_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    LOG_RATIO_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SHOWN_FIELD_NUMBER: _ClassVar[int]
    WINS_FIELD_NUMBER: _ClassVar[int]
    LOSSES_FIELD_NUMBER: _ClassVar[int]
    TIES_FIELD_NUMBER: _ClassVar[int]
    TREATMENT_SHARE_FIELD_NUMBER: _ClassVar[int]
    TREATMENT_SHARE_LOW_FIELD_NUMBER: _ClassVar[int]
    TREATMENT_SHARE_HIGH_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    DELTA_LOW_FIELD_NUMBER: _ClassVar[int]
    DELTA_HIGH_FIELD_NUMBER: _ClassVar[int]
    ARMS_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_JOINED_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_UNJOINED_FIELD_NUMBER: _ClassVar[int]
    name: str
    method: str
    control: str
    treatment: str
    share: float
    running: bool
    started: float
    stopped: float
    decision: str
    log_ratio: float
    threshold: float
    shown: int
    wins: int
    losses: int
    ties: int
    treatment_share: float
    treatment_share_low: float
    treatment_share_high: float
    delta: float
    delta_low: float
    delta_high: float
    arms: _containers.RepeatedCompositeFieldContainer[ArmFigures]
    feedback_joined: int
    feedback_unjoined: int
    def __init__(self, name: _Optional[str] = ..., method: _Optional[str] = ..., control: _Optional[str] = ..., treatment: _Optional[str] = ..., share: _Optional[float] = ..., running: _Optional[bool] = ..., started: _Optional[float] = ..., stopped: _Optional[float] = ..., decision: _Optional[str] = ..., log_ratio: _Optional[float] = ..., threshold: _Optional[float] = ..., shown: _Optional[int] = ..., wins: _Optional[int] = ..., losses: _Optional[int] = ..., ties: _Optional[int] = ..., treatment_share: _Optional[float] = ..., treatment_share_low: _Optional[float] = ..., treatment_share_high: _Optional[float] = ..., delta: _Optional[float] = ..., delta_low: _Optional[float] = ..., delta_high: _Optional[float] = ..., arms: _Optional[_Iterable[_Union[ArmFigures, _Mapping]]] = ..., feedback_joined: _Optional[int] = ..., feedback_unjoined: _Optional[int] = ...) -> None: ...

class ExperimentStatusList(_message.Message):
    __slots__ = ("experiments",)
    EXPERIMENTS_FIELD_NUMBER: _ClassVar[int]
    experiments: _containers.RepeatedCompositeFieldContainer[ExperimentStatus]
    def __init__(self, experiments: _Optional[_Iterable[_Union[ExperimentStatus, _Mapping]]] = ...) -> None: ...

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
