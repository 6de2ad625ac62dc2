"""The export package's errors; the CLI prints them as one line and exits 2.

    ExportError           an export cannot be produced as specified
    └── ParityError       an exported output differs from PyTorch beyond its tolerance
"""


class ExportError(Exception):
    """An export cannot be produced as specified."""


class ParityError(ExportError):
    """An exported output differs from the reference beyond its tolerance."""
