"""export.errors: the export package's errors are a branch of shoprank's error tree."""

from core.errors import ShoprankError
from export.errors import ExportError, ParityError


def test_export_errors_are_shoprank_errors():
    assert issubclass(ExportError, ShoprankError)
    assert issubclass(ParityError, ExportError)
