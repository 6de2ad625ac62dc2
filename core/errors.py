"""shoprank's errors, shared by serving, training and export. Only the servicer turns them into gRPC status codes.

    ShoprankError
    ├── InvalidRequest        the caller asked for something malformed (empty query, unknown filter field...)
    ├── ConfigError           a setting or command-line value is out of range
    ├── DataError             a data file (catalog, judgments) is missing, unreadable or malformed; names the line
    ├── CatalogIndexError     an index directory is missing or does not match what is asked of it
    ├── TritonError           Triton is unreachable, a model is not ready, or an inference failed
    │   ├── TritonUnavailable     nothing answers at the Triton URL
    │   └── DeadlineMissed        an inference did not answer in time
    ├── RerankerBusy          the reranker already has its limit of queries in flight (refused before Triton)
    ├── CatalogStoreError     a call to the catalog store (Milvus) failed
    │   └── CatalogUnavailable    the catalog store does not answer, or not in time
    ├── DeadlineExceeded      the caller's deadline passed before the work was done
    ├── RolloutError          a rollout action does not apply (unknown version, a rollout already active...)
    ├── ExperimentError       an experiment action does not apply (one is running already, no such experiment...)
    ├── InvalidEvent          a feedback event cannot be recorded (unknown product or type, missing id, bad time)
    ├── ExportError           an export cannot be produced as specified (export/errors.py)
    │   └── ParityError           an exported output differs from PyTorch beyond its tolerance
    └── StoreError            the profile store failed
        └── StoreUnavailable      the profile store cannot be reached
"""


# gRPC sends a status message in the trailing metadata, percent-encoded (a non-ASCII byte takes 3 characters), and a
# client refuses metadata past 8 KiB (at random) to 16 KiB: a message that quotes a long input would reach the caller
# as RESOURCE_EXHAUSTED instead of its own status. 1,024 bytes of UTF-8 encode to at most 3 KiB.
MAX_DETAIL_BYTES = 1024


def status_detail(message: object) -> str:
    """`message` (an error, or text) cut to MAX_DETAIL_BYTES of UTF-8, saying so where it was cut."""
    text = str(message)
    encoded = text.encode("utf-8")
    if len(encoded) <= MAX_DETAIL_BYTES:
        return text
    cut = " ... (cut: the message had %d bytes)" % len(encoded)
    return encoded[:MAX_DETAIL_BYTES - len(cut)].decode("utf-8", errors="ignore") + cut


class ShoprankError(Exception):
    """Base of every error shoprank raises on purpose."""


class InvalidRequest(ShoprankError):
    """The request cannot be answered as asked."""


class ConfigError(ShoprankError):
    """A setting cannot be used."""


class DataError(ShoprankError):
    """A data file cannot be used."""


class CatalogIndexError(ShoprankError):
    """An index directory cannot be used."""


class TritonError(ShoprankError):
    """A call to Triton failed."""


class TritonUnavailable(TritonError):
    """Triton does not answer at all."""


class DeadlineMissed(TritonError):
    """An inference did not answer within its deadline."""


class RerankerBusy(ShoprankError):
    """The reranker refused a query at once, without calling Triton: its limit of queries in flight is reached."""


class CatalogStoreError(ShoprankError):
    """A call to the catalog store (Milvus) failed."""


class CatalogUnavailable(CatalogStoreError):
    """The catalog store does not answer at all, or not in time."""


class RolloutError(ShoprankError):
    """A rollout action cannot be done in the current state, or its candidate was rolled back."""


class DeadlineExceeded(ShoprankError):
    """The caller's deadline passed before the work was done."""


class ExperimentError(ShoprankError):
    """An experiment action cannot be done in the current state."""


class InvalidEvent(ShoprankError):
    """A feedback event cannot be recorded as sent."""


class StoreError(ShoprankError):
    """The profile store failed."""


class StoreUnavailable(StoreError):
    """The profile store cannot be reached (not started, down, or refusing writes)."""
