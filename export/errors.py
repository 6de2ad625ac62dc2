"""The export package's errors, a branch of shoprank's error tree (core/errors.py); the CLI prints them as one line
and exits 2.

    ShoprankError
    └── ExportError           an export cannot be produced as specified
        └── ParityError       an exported output differs from PyTorch beyond its tolerance
"""

from core.errors import ShoprankError


class ExportError(ShoprankError):
    """An export cannot be produced as specified."""


class ParityError(ExportError):
    """An exported output differs from the reference beyond its tolerance."""
