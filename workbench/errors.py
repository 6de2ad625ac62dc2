"""The workbench's errors, each with the HTTP status it answers. Only the app (workbench/app.py) turns them into a
page or a JSON body; only the client (workbench/client.py) makes them from gRPC errors.

    WorkbenchError (core.errors.ShoprankError)
    ├── BadInput              a form or API field is malformed, or the service refused the request as malformed (400)
    ├── ServiceUnavailable    the ranking service does not answer, or not in time (503)
    ├── ServiceFailed         the ranking service answered with another error (502)
    └── JudgmentsNotSaved     the judgments file cannot be read or written (500)
"""

from __future__ import annotations

from core.errors import ShoprankError


class WorkbenchError(ShoprankError):
    """Base of the workbench's errors; `status` is the HTTP status it answers."""

    status = 500


class BadInput(WorkbenchError):
    """A field cannot be used as given."""

    status = 400


class ServiceUnavailable(WorkbenchError):
    """The ranking service does not answer."""

    status = 503


class ServiceFailed(WorkbenchError):
    """The ranking service answered with an error that is not the caller's."""

    status = 502


class JudgmentsNotSaved(WorkbenchError):
    """The judgments file cannot be read or written; what it held before is untouched."""

    status = 500
