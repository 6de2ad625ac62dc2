"""The (query, product text) pairs the reranker is fed, encoded as the orchestrator encodes them."""

from __future__ import annotations

import numpy as np

from core.specs import RERANKER, ModelSpec

# Pairs the parity check scores, batched together so padding and truncation of either side are exercised.
PARITY_PAIRS = [
    ("cordless drill", "Kestrel 20V Cordless Drill/Driver Kit with 2 Batteries and Charger, 1/2 in. chuck | Kestrel"),
    ("2x4 lumber 8 ft", "2 in. x 4 in. x 8 ft. Premium Kiln-Dried Whitewood Stud | Lumber"),
    ("bluetooth headphnes", "Over-Ear Wireless Bluetooth Headphones with Active Noise Cancelling"),
    ("手机推荐", "智能手机 6.5 英寸 128GB 双卡双待"),
    ("behr deck over paint for old wood and concrete patio " * 3,
     "BEHR Premium Textured DeckOver 1-gal. #SC-141 Tugboat Wood and Concrete Coating " * 4),
    ("x", "x"),
]


def pair_encoder(spec: ModelSpec = RERANKER):
    """The PairEncoder the orchestrator sends the served reranker's inputs with (its default max_pair_tokens)."""
    from core.base_model import base_model_dir  # noqa: PLC0415
    from core.settings import Settings  # noqa: PLC0415
    from core.tokenization import PairEncoder  # noqa: PLC0415

    return PairEncoder(base_model_dir() / "tokenizer.json", min(Settings.max_pair_tokens, spec.sequence_lengths[2]))


def encode_pairs(encoder, pairs: list[tuple[str, str]]) -> dict[str, np.ndarray]:
    """The model's inputs for a batch of (query, text) pairs."""
    return encoder([query for query, _ in pairs], [text for _, text in pairs])
