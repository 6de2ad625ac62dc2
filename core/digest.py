"""Digests of files, for stamps that say what an artifact was made from."""

from __future__ import annotations

import hashlib
from pathlib import Path


def files_digest(*paths: Path) -> str:
    """SHA-256 of the files' bytes, one after another (hex)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
