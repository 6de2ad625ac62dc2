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
RETRIEVAL_MODE_UNSPECIFIED: RetrievalMode
RETRIEVAL_MODE_HYBRID: RetrievalMode
RETRIEVAL_MODE_LEXICAL: RetrievalMode
RETRIEVAL_MODE_DENSE: RetrievalMode

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
    __slots__ = ("query", "user_id", "top_k", "filters", "candidate_ids", "explain", "retrieval", "skip_rerank", "skip_spelling_correction")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_IDS_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    RETRIEVAL_FIELD_NUMBER: _ClassVar[int]
    SKIP_RERANK_FIELD_NUMBER: _ClassVar[int]
    SKIP_SPELLING_CORRECTION_FIELD_NUMBER: _ClassVar[int]
    query: str
    user_id: str
    top_k: int
    filters: _containers.RepeatedCompositeFieldContainer[Filter]
    candidate_ids: _containers.RepeatedScalarFieldContainer[str]
    explain: bool
    retrieval: RetrievalMode
    skip_rerank: bool
    skip_spelling_correction: bool
    def __init__(self, query: _Optional[str] = ..., user_id: _Optional[str] = ..., top_k: _Optional[int] = ..., filters: _Optional[_Iterable[_Union[Filter, _Mapping]]] = ..., candidate_ids: _Optional[_Iterable[str]] = ..., explain: _Optional[bool] = ..., retrieval: _Optional[_Union[RetrievalMode, str]] = ..., skip_rerank: _Optional[bool] = ..., skip_spelling_correction: _Optional[bool] = ...) -> None: ...

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
    __slots__ = ("product_id", "title", "score", "components")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    title: str
    score: float
    components: _containers.RepeatedCompositeFieldContainer[ScoreComponent]
    def __init__(self, product_id: _Optional[str] = ..., title: _Optional[str] = ..., score: _Optional[float] = ..., components: _Optional[_Iterable[_Union[ScoreComponent, _Mapping]]] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("items", "model_versions", "degraded", "degraded_reason", "took_ms", "corrected_query")
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
    items: _containers.RepeatedCompositeFieldContainer[Item]
    model_versions: _containers.ScalarMap[str, str]
    degraded: bool
    degraded_reason: str
    took_ms: float
    corrected_query: str
    def __init__(self, items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ..., model_versions: _Optional[_Mapping[str, str]] = ..., degraded: _Optional[bool] = ..., degraded_reason: _Optional[str] = ..., took_ms: _Optional[float] = ..., corrected_query: _Optional[str] = ...) -> None: ...
