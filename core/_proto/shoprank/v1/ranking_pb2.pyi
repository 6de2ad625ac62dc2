import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RetrievalMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RETRIEVAL_MODE_UNSPECIFIED: _ClassVar[RetrievalMode]
    RETRIEVAL_MODE_HYBRID: _ClassVar[RetrievalMode]
    RETRIEVAL_MODE_LEXICAL: _ClassVar[RetrievalMode]
    RETRIEVAL_MODE_DENSE: _ClassVar[RetrievalMode]

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_VIEW: _ClassVar[EventType]
    EVENT_TYPE_CLICK: _ClassVar[EventType]
    EVENT_TYPE_CART: _ClassVar[EventType]
    EVENT_TYPE_PURCHASE: _ClassVar[EventType]
RETRIEVAL_MODE_UNSPECIFIED: RetrievalMode
RETRIEVAL_MODE_HYBRID: RetrievalMode
RETRIEVAL_MODE_LEXICAL: RetrievalMode
RETRIEVAL_MODE_DENSE: RetrievalMode
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_VIEW: EventType
EVENT_TYPE_CLICK: EventType
EVENT_TYPE_CART: EventType
EVENT_TYPE_PURCHASE: EventType

class Filter(_message.Message):
    __slots__ = ("field", "any_of", "min", "max")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    ANY_OF_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    field: str
    any_of: _containers.RepeatedScalarFieldContainer[str]
    min: float
    max: float
    def __init__(self, field: _Optional[str] = ..., any_of: _Optional[_Iterable[str]] = ..., min: _Optional[float] = ..., max: _Optional[float] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("query", "user_id", "top_k", "filters", "candidate_ids", "explain", "retrieval", "skip_rerank", "skip_spelling_correction", "skip_personalization", "blend_weights", "combination_weights", "include_out_of_stock", "skip_cross_encoder")
    class CombinationWeightsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    QUERY_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_IDS_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    RETRIEVAL_FIELD_NUMBER: _ClassVar[int]
    SKIP_RERANK_FIELD_NUMBER: _ClassVar[int]
    SKIP_SPELLING_CORRECTION_FIELD_NUMBER: _ClassVar[int]
    SKIP_PERSONALIZATION_FIELD_NUMBER: _ClassVar[int]
    BLEND_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    COMBINATION_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_OUT_OF_STOCK_FIELD_NUMBER: _ClassVar[int]
    SKIP_CROSS_ENCODER_FIELD_NUMBER: _ClassVar[int]
    query: str
    user_id: str
    top_k: int
    filters: _containers.RepeatedCompositeFieldContainer[Filter]
    candidate_ids: _containers.RepeatedScalarFieldContainer[str]
    explain: bool
    retrieval: RetrievalMode
    skip_rerank: bool
    skip_spelling_correction: bool
    skip_personalization: bool
    blend_weights: BlendWeights
    combination_weights: _containers.ScalarMap[str, float]
    include_out_of_stock: bool
    skip_cross_encoder: bool
    def __init__(self, query: _Optional[str] = ..., user_id: _Optional[str] = ..., top_k: _Optional[int] = ..., filters: _Optional[_Iterable[_Union[Filter, _Mapping]]] = ..., candidate_ids: _Optional[_Iterable[str]] = ..., explain: _Optional[bool] = ..., retrieval: _Optional[_Union[RetrievalMode, str]] = ..., skip_rerank: _Optional[bool] = ..., skip_spelling_correction: _Optional[bool] = ..., skip_personalization: _Optional[bool] = ..., blend_weights: _Optional[_Union[BlendWeights, _Mapping]] = ..., combination_weights: _Optional[_Mapping[str, float]] = ..., include_out_of_stock: _Optional[bool] = ..., skip_cross_encoder: _Optional[bool] = ...) -> None: ...

class BlendWeights(_message.Message):
    __slots__ = ("relevance", "preference", "popularity")
    RELEVANCE_FIELD_NUMBER: _ClassVar[int]
    PREFERENCE_FIELD_NUMBER: _ClassVar[int]
    POPULARITY_FIELD_NUMBER: _ClassVar[int]
    relevance: float
    preference: float
    popularity: float
    def __init__(self, relevance: _Optional[float] = ..., preference: _Optional[float] = ..., popularity: _Optional[float] = ...) -> None: ...

class ScoreComponent(_message.Message):
    __slots__ = ("name", "raw", "rank", "contribution")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    raw: float
    rank: int
    contribution: float
    def __init__(self, name: _Optional[str] = ..., raw: _Optional[float] = ..., rank: _Optional[int] = ..., contribution: _Optional[float] = ...) -> None: ...

class Item(_message.Message):
    __slots__ = ("product_id", "title", "score", "components", "arm")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    title: str
    score: float
    components: _containers.RepeatedCompositeFieldContainer[ScoreComponent]
    arm: str
    def __init__(self, product_id: _Optional[str] = ..., title: _Optional[str] = ..., score: _Optional[float] = ..., components: _Optional[_Iterable[_Union[ScoreComponent, _Mapping]]] = ..., arm: _Optional[str] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("items", "model_versions", "degraded", "degraded_reason", "took_ms", "corrected_query", "personalized", "personalization", "shop", "shop_weights", "request_id", "experiment")
    class ModelVersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_REASON_FIELD_NUMBER: _ClassVar[int]
    TOOK_MS_FIELD_NUMBER: _ClassVar[int]
    CORRECTED_QUERY_FIELD_NUMBER: _ClassVar[int]
    PERSONALIZED_FIELD_NUMBER: _ClassVar[int]
    PERSONALIZATION_FIELD_NUMBER: _ClassVar[int]
    SHOP_FIELD_NUMBER: _ClassVar[int]
    SHOP_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Item]
    model_versions: _containers.ScalarMap[str, str]
    degraded: bool
    degraded_reason: str
    took_ms: float
    corrected_query: str
    personalized: bool
    personalization: str
    shop: str
    shop_weights: bool
    request_id: str
    experiment: str
    def __init__(self, items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ..., model_versions: _Optional[_Mapping[str, str]] = ..., degraded: _Optional[bool] = ..., degraded_reason: _Optional[str] = ..., took_ms: _Optional[float] = ..., corrected_query: _Optional[str] = ..., personalized: _Optional[bool] = ..., personalization: _Optional[str] = ..., shop: _Optional[str] = ..., shop_weights: _Optional[bool] = ..., request_id: _Optional[str] = ..., experiment: _Optional[str] = ...) -> None: ...

class FeedbackEvent(_message.Message):
    __slots__ = ("event_id", "user_id", "product_id", "type", "time", "query", "quantity", "request_id", "position")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    user_id: str
    product_id: str
    type: EventType
    time: _timestamp_pb2.Timestamp
    query: str
    quantity: int
    request_id: str
    position: int
    def __init__(self, event_id: _Optional[str] = ..., user_id: _Optional[str] = ..., product_id: _Optional[str] = ..., type: _Optional[_Union[EventType, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., query: _Optional[str] = ..., quantity: _Optional[int] = ..., request_id: _Optional[str] = ..., position: _Optional[int] = ...) -> None: ...

class FeedbackAck(_message.Message):
    __slots__ = ("duplicate",)
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    duplicate: bool
    def __init__(self, duplicate: _Optional[bool] = ...) -> None: ...

class EventError(_message.Message):
    __slots__ = ("index", "event_id", "reason")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    index: int
    event_id: str
    reason: str
    def __init__(self, index: _Optional[int] = ..., event_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class FeedbackStreamResult(_message.Message):
    __slots__ = ("received", "accepted", "duplicates", "errors", "rejected")
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    received: int
    accepted: int
    duplicates: int
    errors: _containers.RepeatedCompositeFieldContainer[EventError]
    rejected: int
    def __init__(self, received: _Optional[int] = ..., accepted: _Optional[int] = ..., duplicates: _Optional[int] = ..., errors: _Optional[_Iterable[_Union[EventError, _Mapping]]] = ..., rejected: _Optional[int] = ...) -> None: ...

class ForgetUserRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class ForgetUserResponse(_message.Message):
    __slots__ = ("events_deleted",)
    EVENTS_DELETED_FIELD_NUMBER: _ClassVar[int]
    events_deleted: int
    def __init__(self, events_deleted: _Optional[int] = ...) -> None: ...
