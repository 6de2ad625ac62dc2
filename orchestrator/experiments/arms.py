"""An experiment's arm: a way the service can rank, named in a short text, served side by side with another.

    default                  the service's ranking as configured
    fused                    the fused order of retrieval, not reranked
    no-cross-encoder         the served combination's weights without the cross-encoder
    no-personalization       as for an anonymous user
    reranker=V               reranker version V (loaded: the stable version or a rollout's candidate)
    weights=bm25:1+dense:0.5 these combination weights (components not named weigh 0)

Parts join with commas: "reranker=3,no-personalization". Every arm changes only how the candidates are ranked, never
which are retrieved, so two arms of one query can share its retrieval (orchestrator/experiments/controller.py).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from core.errors import InvalidRequest
from core.weights import DEFAULT_WEIGHTS


@dataclass(frozen=True)
class Arm:
    """How one arm ranks; the fields mirror SearchQuery's (orchestrator/search/context.py)."""

    text: str = field(default="default", compare=False)  # as written (normalized); two spellings of one arm are equal
    skip_rerank: bool = False
    skip_cross_encoder: bool = False
    personalize: bool = True
    reranker_version: str = ""
    combination_weights: tuple[tuple[str, float], ...] | None = None

    def apply(self, query):
        """The SearchQuery `query` as this arm ranks it (the caller's own overrides are kept where the arm sets
        none)."""
        changes: dict = {}
        if self.skip_rerank:
            changes["skip_rerank"] = True
        if self.skip_cross_encoder:
            changes["skip_cross_encoder"] = True
        if not self.personalize:
            changes["personalize"] = False
        if self.reranker_version:
            changes["reranker_version"] = self.reranker_version
        if self.combination_weights is not None:
            changes["combination_weights"] = dict(self.combination_weights)
        return dataclasses.replace(query, **changes)


FLAGS = {"default": {}, "fused": {"skip_rerank": True}, "no-cross-encoder": {"skip_cross_encoder": True},
         "no-personalization": {"personalize": False}}


def parse_arm(text: str) -> Arm:
    """The arm a text names; InvalidRequest saying what is wrong."""
    fields: dict = {}
    parts = [part.strip() for part in text.strip().lower().split(",") if part.strip()]
    if not parts:
        raise InvalidRequest("an arm must be named: default, fused, no-cross-encoder, no-personalization, "
                             "reranker=VERSION or weights=NAME:WEIGHT+...")
    for part in parts:
        if part in FLAGS:
            fields.update(FLAGS[part])
        elif part.startswith("reranker="):
            version = part.split("=", 1)[1]
            if not version.isdigit():
                raise InvalidRequest(f"arm {text!r}: a reranker version is a number, not {version!r}")
            fields["reranker_version"] = version
        elif part.startswith("weights="):
            fields["combination_weights"] = _weights(text, part.split("=", 1)[1])
        else:
            raise InvalidRequest(f"arm {text!r}: unknown part {part!r}; parts: {', '.join(FLAGS)}, reranker=VERSION, "
                                 "weights=NAME:WEIGHT+...")
    if fields.get("skip_rerank") and ("combination_weights" in fields or "reranker_version" in fields
                                      or fields.get("skip_cross_encoder")):
        raise InvalidRequest(f"arm {text!r}: 'fused' is not reranked, so it takes no reranker or weights")
    return Arm(text=",".join(parts), **fields)


def _weights(text: str, spec: str) -> tuple[tuple[str, float], ...]:
    weights: dict[str, float] = {}
    for item in filter(None, spec.split("+")):
        name, _, value = item.partition(":")
        if name not in DEFAULT_WEIGHTS:
            raise InvalidRequest(f"arm {text!r}: unknown component {name!r}; components: {', '.join(DEFAULT_WEIGHTS)}")
        try:
            weight = float(value)
        except ValueError:
            raise InvalidRequest(f"arm {text!r}: the weight of {name} must be a number, not {value!r}") from None
        if not math.isfinite(weight):
            raise InvalidRequest(f"arm {text!r}: the weight of {name} must be finite")
        weights[name] = weight
    if not weights:
        raise InvalidRequest(f"arm {text!r}: weights= names no component")
    return tuple(sorted(weights.items()))
