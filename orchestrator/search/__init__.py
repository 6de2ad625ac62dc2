"""The search path as named stages (pipeline.py lists them): one module a stage, over a typed SearchContext."""

from .context import ScoredItem, SearchContext, SearchQuery, SearchResult
from .cross_encoder import CrossEncoder
from .pipeline import Pipeline
from .understand import QueryEncoder

__all__ = ["CrossEncoder", "Pipeline", "QueryEncoder", "ScoredItem", "SearchContext", "SearchQuery", "SearchResult"]
