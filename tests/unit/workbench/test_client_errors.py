"""How a failed gRPC call reads on the page: the caller's fault, a service that is down, or another failure."""

import grpc
import pytest

from workbench.client import service_error
from workbench.errors import BadInput, ServiceFailed, ServiceUnavailable


@pytest.mark.parametrize("code, kind, status, text", [
    (grpc.StatusCode.INVALID_ARGUMENT, BadInput, 400, "query must have 1..1000 characters"),
    (grpc.StatusCode.NOT_FOUND, BadInput, 400, "query must have 1..1000 characters"),
    (grpc.StatusCode.UNAVAILABLE, ServiceUnavailable, 503, "did not answer Search (UNAVAILABLE"),
    (grpc.StatusCode.DEADLINE_EXCEEDED, ServiceUnavailable, 503, "Is `shoprank serve` running there?"),
    (grpc.StatusCode.UNAUTHENTICATED, ServiceFailed, 502, "refused the token"),
    (grpc.StatusCode.INTERNAL, ServiceFailed, 502, "failed Search: INTERNAL: query must"),
])
def test_each_status_code_becomes_a_message_and_an_http_status(code, kind, status, text):
    error = service_error("127.0.0.1:50051", "Search", code, "query must have 1..1000 characters")
    assert isinstance(error, kind) and error.status == status and text in str(error)
