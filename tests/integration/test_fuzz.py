"""Property-based fuzzing (Hypothesis) of the public and admin gRPC APIs on real servers: real tritonserver, real
Milvus Lite server, real gRPC over loopback (issue 25, item 5; docs/fuzzing.md).

Every fuzzed call must hold, whatever was sent:
- its status is OK or a documented client error (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION,
  RESOURCE_EXHAUSTED, UNAUTHENTICATED; DEADLINE_EXCEEDED only for a search sent with a short deadline), never
  INTERNAL, UNKNOWN or UNAVAILABLE (no server is down here);
- it answers within MAX_CALL_S, measured around the call alone (each call has a CALL_TIMEOUT_S gRPC deadline, so a
  hang fails instead of stalling the suite); a call over it is sent again once and fails when slow twice, so that a
  stall of the shared test machine is not taken for a slow input;
- an OK search is well formed: at most top_k items, each product once, finite scores, and only candidates that were
  named when candidate_ids were;
- the service still answers a plain search afterwards (every HEALTH_EVERY calls and after each property).

Two services of this module's own, each writing only in its own temporary folder: `plain` (the demo index in
process, reranking off: most searches, and the feedback calls) and `full` (the whole pipeline with the cross-encoder,
over this module's own shop in Milvus, with the admin API: a share of the searches and feedback, and every admin
call). The catalog calls run on fresh shops of their own (CATALOG_ROUNDS), never the shared `demo` shop.

Examples per RPC: DEFAULT_EXAMPLES; SHOPRANK_FUZZ_EXAMPLES=N gives every RPC N (`make fuzz`).
Runs are derandomized: the same examples every run. Calls go one at a time (admission control refuses past its bound
of calls in flight, which is not what is fuzzed here).

A failure found here is pinned by a regression test at the end of this module, marked xfail(strict=True) until it
is fixed; the properties let that bug's outcome pass for its class of input only (known_bug), so that they keep
fuzzing everything else. Remove both when the bug is fixed.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import math
import os
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

import grpc
import pytest
from google.protobuf.message_factory import GetMessageClass
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import Phase, given, seed, settings
from hypothesis import strategies as st

from core._proto.shoprank.v1 import admin_pb2, ranking_pb2, ranking_pb2_grpc
from core.personal_blend import GROUP_NAMES
from core.weights import DEFAULT_WEIGHTS
from orchestrator.admission import RETRY_AFTER
from orchestrator.catalog.milvus_process import LocalMilvus
from orchestrator.harness import scratch_state

from .conftest import DEMO_CATALOG, ServiceThread, demo_catalog_in_milvus

pytestmark = pytest.mark.integration

# Examples per RPC in the default run: issue 25's 10,000 for every RPC. The two that change the catalog cost the
# most (DeleteProducts ~5 ms, UpsertProducts ~20 ms: new products are embedded through Triton) and slow Milvus Lite's
# reads about tenfold as one shop churns, so they run in CATALOG_ROUNDS rounds, each on a fresh shop.
# SHOPRANK_FUZZ_EXAMPLES=N gives every RPC N (`make fuzz`: 10,000).
DEFAULT_EXAMPLES = 10_000
CATALOG_ROUNDS = 5
EXAMPLES = os.environ.get("SHOPRANK_FUZZ_EXAMPLES", "")
FULL_PIPELINE_SHARE = 0.05  # of the search examples: the cross-encoder, over Milvus
MILVUS_SHARE = 0.1  # of the feedback examples: their products are read from Milvus
ENORMOUS_SHARE = 0.005  # of the stream examples: streams of a few thousand messages
MAX_CALL_S = 1.0
CALL_TIMEOUT_S = 5.0
MAX_REQUEST_BYTES = 4 * 1024 * 1024  # gRPC's default receive limit (the public port's is 8 MiB)
HEALTH_EVERY = 200

SHOP = "fuzz-test"
TOKEN = "fuzz-test-token"
AUTH = (("authorization", f"Bearer {TOKEN}"),)

# Derandomized, so a run is the same examples every time (CI is deterministic), and without Hypothesis's own
# per-example deadline: each call's wall time is measured and bounded here. No example database: a derandomized run
# has nothing to replay. No health check is suppressed.
# The target phase is left out: nothing here calls target(), and the phase imports a module lazily, mid-run, which
# CPython 3.11.7 can fail to compile while the in-process service's thread compiles too ("SystemError: AST constructor
# recursion depth mismatch", python/cpython#106905).
settings.register_profile("shoprank-fuzz", deadline=None, derandomize=True, database=None, print_blob=False,
                          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink, Phase.explain])
FUZZ = settings.get_profile("shoprank-fuzz")


def examples(share: float = 1.0) -> settings:
    """The fuzz profile with `share` of an RPC's examples."""
    count = int(EXAMPLES) if EXAMPLES else DEFAULT_EXAMPLES
    return settings(FUZZ, max_examples=max(1, round(count * share)))


C = grpc.StatusCode
CLIENT_ERRORS = frozenset({C.OK, C.INVALID_ARGUMENT, C.NOT_FOUND, C.FAILED_PRECONDITION, C.RESOURCE_EXHAUSTED,
                           C.UNAUTHENTICATED})

with DEMO_CATALOG.open(newline="", encoding="utf-8") as _file:
    _ROWS = list(csv.DictReader(_file))
DEMO_IDS = [row["product_id"] for row in _ROWS]
BRANDS = sorted({row["brand"] for row in _ROWS if row["brand"]})
CATEGORIES = sorted({row["category"] for row in _ROWS if row["category"]})
DEPARTMENTS = sorted({row["department"] for row in _ROWS if row["department"]})
QUERIES = ["cordless drill", "wireless earbuds", "garden hose", "phone case", "bluetooth speaker", "led light bulb",
           "cordles dril", "something to keep coffee hot", "usb-c cable 2 m", "无线耳机", "手机推荐",
           "Kestrel 20V", "laptop under 800", "dog food", "ＴＶ", "café", "télévision 55 pouces",
           "phone for elderly parents"]
USERS = [f"fuzz-user-{number}" for number in range(4)]  # each has a few purchases in both services (_seed_users)
COMPONENTS = sorted(DEFAULT_WEIGHTS)


# ------------------------------------------------------------------------------------------------------ calls

def _methods() -> dict:
    methods = {}
    for module, service in ((ranking_pb2, "Ranking"), (admin_pb2, "Admin")):
        methods.update(module.DESCRIPTOR.services_by_name[service].methods_by_name)
    return methods


METHODS_BY_NAME = _methods()


class Calls:
    """Sends calls one at a time and checks the properties every call must hold; keeps each RPC's figures.

    Requests are serialized before the clock starts, so that a call's time is the service's (and the network's),
    not the protobuf encoding of a huge request in this process."""

    def __init__(self, channel: grpc.Channel, admin_channel: grpc.Channel | None = None, milvus: bool = False) -> None:
        self.milvus = milvus  # the service's catalog is in Milvus
        self.ranking = ranking_pb2_grpc.RankingStub(channel)
        self._channels = {"Ranking": channel, "Admin": admin_channel}
        self._callables: dict[str, Callable] = {}
        self.count: Counter[str] = Counter()
        self.statuses: dict[str, Counter[str]] = defaultdict(Counter)
        self.slowest: dict[str, float] = defaultdict(float)
        self.seconds: Counter[str] = Counter()
        self.samples: dict[tuple[str, str], str] = {}  # each RPC's first details per status
        self.known: Counter[str] = Counter()  # outcomes explained by pinned bugs
        self.slow_once: dict[str, list[float]] = defaultdict(list)  # first tries over MAX_CALL_S, sent again
        self._since_health = 0

    def _callable(self, rpc: str) -> Callable:
        if rpc not in self._callables:
            method = METHODS_BY_NAME[rpc]
            channel = self._channels[method.containing_service.name]
            kind = channel.stream_unary if method.client_streaming else channel.unary_unary
            self._callables[rpc] = kind(f"/{method.containing_service.full_name}/{method.name}",
                                        request_serializer=None,
                                        response_deserializer=GetMessageClass(method.output_type).FromString)
        return self._callables[rpc]

    def __call__(self, rpc: str, request, *, metadata=(), timeout: float = CALL_TIMEOUT_S,
                 allowed: Iterable[grpc.StatusCode] = CLIENT_ERRORS):
        """(status, response or None, details) of one call (a list of messages for a stream); AssertionError when a
        property fails. An outcome that a pinned bug explains (known_bug) passes; it is counted as that bug."""
        method = self._callable(rpc)
        streaming = METHODS_BY_NAME[rpc].client_streaming
        payload = [message.SerializeToString() for message in request] if streaming else request.SerializeToString()

        def send() -> tuple[object, grpc.StatusCode, str, dict, float]:
            started = time.perf_counter()
            try:
                response = method(iter(payload) if streaming else payload, metadata=metadata, timeout=timeout)
                return response, C.OK, "", {}, time.perf_counter() - started
            except grpc.RpcError as error:
                return (None, error.code(), error.details() or "", dict(error.trailing_metadata() or ()),
                        time.perf_counter() - started)

        response, code, details, trailers, took = send()
        if took > MAX_CALL_S:
            # Sent again once: a call slow by its input is slow twice, while a stall of this shared 2-core machine
            # (another process's burst) is not. Both times are kept.
            self.slow_once[rpc].append(took)
            response, code, details, trailers, took = send()
        self.count[rpc] += 1
        self.statuses[rpc][code.name] += 1
        self.slowest[rpc] = max(self.slowest[rpc], took)
        self.seconds[rpc] += took
        self.samples.setdefault((rpc, code.name), details[:160])
        known = known_bug(rpc, request, code, details, self.milvus)
        if known:
            self.known[known] += 1
        else:
            assert code in allowed, f"{rpc} answered {code.name}: {details}"
            if code == C.RESOURCE_EXHAUSTED:  # admission control's refusal, or a request over the size limit
                size = sum(map(len, payload)) if streaming else len(payload)
                assert RETRY_AFTER in trailers or size > MAX_REQUEST_BYTES, f"{rpc} answered {code.name}: {details}"
        assert took <= MAX_CALL_S, (f"{rpc} took {self.slow_once[rpc][-1]:.3f} s, then {took:.3f} s again (status "
                                    f"{code.name}: {details[:200]})")
        self._since_health += 1
        if self._since_health >= HEALTH_EVERY:
            self.check_health()
        return code, response, details

    def check_health(self) -> None:
        """A plain search still answers, in time (sent again once when slow, as any call)."""
        self._since_health = 0
        for _ in range(2):
            started = time.perf_counter()
            response = self.ranking.Search(ranking_pb2.SearchRequest(query="cordless drill", top_k=5),
                                           timeout=CALL_TIMEOUT_S)
            took = time.perf_counter() - started
            assert response.items, "a plain search found nothing"
            if took <= MAX_CALL_S:
                return
            self.slow_once["health check"].append(took)
        raise AssertionError(f"a plain search took {self.slow_once['health check'][-1]:.3f} s, then {took:.3f} s")

    def report(self, name: str) -> str:
        lines = [f"fuzz calls to {name}:"]
        for rpc in sorted(self.count):
            statuses = ", ".join(f"{status} {count}" for status, count in self.statuses[rpc].most_common())
            lines.append(f"  {rpc}: {self.count[rpc]} calls in {self.seconds[rpc]:.1f} s, slowest "
                         f"{self.slowest[rpc] * 1000:.0f} ms ({statuses})")
            if self.slow_once[rpc]:
                lines.append(f"    sent again after a first try over {MAX_CALL_S} s: "
                             f"{', '.join(f'{took:.2f} s' for took in self.slow_once[rpc])}")
            lines.extend(f"    {status}: {details!r}" for (called, status), details in self.samples.items()
                         if called == rpc and status != "OK")
        lines.extend(f"  known bug, {count} calls: {reason}" for reason, count in self.known.items())
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- strategies

INT32 = st.one_of(st.sampled_from([0, 1, -1, 2, 10, 100, 999, 1000, 1001, 10_000, 10_001, 2**31 - 1, -2**31]),
                  st.integers(-2**31, 2**31 - 1))
INT64 = st.one_of(st.sampled_from([0, 1, -1, 2**31, 2**53 + 1, 2**63 - 1, -2**63]), st.integers(-2**63, 2**63 - 1))
DOUBLES = st.one_of(st.sampled_from([0.0, -0.0, 1.0, -1.0, math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324,
                                     2.0**63, 0.1]),
                    st.floats(allow_nan=True, allow_infinity=True))
FINITE = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)

# Strings protobuf can carry (no surrogates): unicode, bytes read as Latin-1 (every control character), edge cases,
# and long ones built by repetition (drawing thousands of characters one by one is slow and hits Hypothesis's
# size limits).
EDGES = ["", " ", "\t\n", "\x00", "a\x00b", "\x7f", "\u200b", "\u202e evil", "\ufeff", "\U0001f600", "e\u0301",
         "'", '"', "\\", '\\"', "%s", "{}", "[]", "${x}", "' or 1=1 --", '") or true or ("', "in [\"D0001\"]",
         "product_id != ''", "*", "..", "/", "NaN", "-1", "1e999", "İ", "ß", "ﬁ", "\uffff", "\U0010ffff"]
SHORT_TEXT = st.one_of(st.text(max_size=24), st.sampled_from(EDGES),
                       st.binary(max_size=24).map(lambda data: data.decode("latin-1")))


def repeated(text: str, length: int) -> str:
    """`text` repeated to exactly `length` characters."""
    return (text * (length // len(text) + 1))[:length] if text else ""


def long_text(lengths: Iterable[int]) -> st.SearchStrategy[str]:
    return st.builds(repeated, st.text(min_size=1, max_size=6), st.sampled_from(list(lengths)))


TEXT = st.one_of(SHORT_TEXT, SHORT_TEXT, long_text([255, 256, 257, 999, 1000, 1001, 5000, 100_000]))


def expand(values: list[str], count: int) -> list[str]:
    """`count` strings from the drawn `values`, numbered past the first round so that they differ."""
    return [value if number < len(values) else f"{value}{number}"
            for number, value in ((number, values[number % len(values)]) for number in range(count))]


def many(values: st.SearchStrategy[str], counts: list[int]) -> st.SearchStrategy[list[str]]:
    """Lists of thousands of strings, built from a few drawn ones."""
    return st.builds(expand, st.lists(values, min_size=1, max_size=4), st.sampled_from(counts))


# Search requests

def _filter(field: str, any_of: list[str], minimum: float | None, maximum: float | None) -> ranking_pb2.Filter:
    message = ranking_pb2.Filter(field=field, any_of=any_of)
    if minimum is not None:
        message.min = minimum
    if maximum is not None:
        message.max = maximum
    return message


def copies(filters: st.SearchStrategy[ranking_pb2.Filter], counts: list[int]) -> st.SearchStrategy[list]:
    """Lists of hundreds of filters, repeating a few drawn ones."""
    return st.builds(lambda drawn, count: (drawn * count)[:count], st.lists(filters, min_size=1, max_size=3),
                     st.sampled_from(counts))


TEXT_FIELD_VALUES = {"brand": BRANDS, "category": CATEGORIES, "department": DEPARTMENTS}
VALID_FILTERS = st.one_of(
    st.sampled_from(sorted(TEXT_FIELD_VALUES)).flatmap(lambda field: st.builds(
        _filter, st.just(field), st.lists(st.sampled_from(TEXT_FIELD_VALUES[field]) | SHORT_TEXT, min_size=1,
                                          max_size=4), st.none(), st.none())),
    st.builds(lambda low, span, which: _filter("price", [], low if which != "max" else None,
                                               low + span if which != "min" else None),
              st.floats(0, 1500), st.floats(0, 1500), st.sampled_from(["both", "min", "max"])),
)
FIELDS = st.sampled_from(["price", "brand", "category", "department", "Price", "BRAND", "stock", "title",
                          "product_id", ""]) | SHORT_TEXT
# A text filter with thousands of values. The service's cost grows with the number of filter values in a request
# (~20 µs each on the index, ~30 µs on Milvus): 50,000 take over a second (test_filters_with_50000_values_in_all_...),
# so the fuzzed requests stay at 10,000 or fewer.
HUGE_FILTERS = st.builds(_filter, st.sampled_from(sorted(TEXT_FIELD_VALUES)),
                         many(st.sampled_from(BRANDS + CATEGORIES) | SHORT_TEXT, [1000, 5000, 10_000]), st.none(),
                         st.none())
SMALL_WILD_FILTERS = st.one_of(
    st.builds(_filter, FIELDS, st.lists(SHORT_TEXT, max_size=4), st.none() | DOUBLES, st.none() | DOUBLES),
    st.builds(_filter, FIELDS, st.lists(SHORT_TEXT, max_size=4), st.none(), st.none()),
)
WILD_FILTERS = st.one_of(
    SMALL_WILD_FILTERS,
    HUGE_FILTERS,
)
FILTER_LISTS = st.one_of(
    st.just([]), st.just([]),
    st.lists(VALID_FILTERS, max_size=3),
    st.lists(VALID_FILTERS | WILD_FILTERS, max_size=3),
    # hundreds of small filters (a huge any_of goes alone: together they would only measure this client's encoding)
    copies(VALID_FILTERS | SMALL_WILD_FILTERS, [100, 500, 2000]),
)
CANDIDATES = st.one_of(
    st.just([]), st.just([]), st.just([]),
    st.lists(st.sampled_from(DEMO_IDS), max_size=30),  # duplicates included
    st.lists(st.sampled_from(DEMO_IDS) | SHORT_TEXT, max_size=10),
    st.builds(lambda start, count: [DEMO_IDS[(start + n) % len(DEMO_IDS)] for n in range(count)],
              st.integers(0, len(DEMO_IDS) - 1), st.sampled_from([304, 999, 1000, 1001, 5000])),
    many(SHORT_TEXT, [1000, 1001]),
)
WEIGHT_NAMES = st.sampled_from(COMPONENTS) | SHORT_TEXT


@st.composite
def blend_weights(draw, values=DOUBLES) -> ranking_pb2.BlendWeights | None:
    if draw(st.booleans()):
        return None
    drawn = draw(st.fixed_dictionaries({}, optional={group: values for group in GROUP_NAMES}))
    return ranking_pb2.BlendWeights(**drawn)


def search_request(query, user_id, top_k, filters, candidates, retrieval, combination, blend, flags):
    request = ranking_pb2.SearchRequest(query=query, user_id=user_id, filters=filters, candidate_ids=candidates,
                                        retrieval=retrieval, combination_weights=combination, **flags)
    if top_k is not None:
        request.top_k = top_k
    if blend is not None:
        request.blend_weights.CopyFrom(blend)
    return request


FLAGS = st.fixed_dictionaries({name: st.booleans() for name in (
    "explain", "skip_rerank", "skip_spelling_correction", "skip_personalization", "include_out_of_stock",
    "skip_cross_encoder")})
VALID_SEARCHES = st.builds(
    search_request,
    query=st.sampled_from(QUERIES) | st.text(min_size=1, max_size=40).filter(str.strip),
    user_id=st.sampled_from(["", *USERS]) | st.text(max_size=20),
    top_k=st.none() | st.integers(1, 1000) | st.sampled_from([1, 1000]),
    filters=st.one_of(st.just([]), st.lists(VALID_FILTERS, max_size=3), st.lists(HUGE_FILTERS, min_size=1, max_size=1),
                      copies(VALID_FILTERS, [40, 50, 100, 500])),
    candidates=st.just([]) | st.lists(st.sampled_from(DEMO_IDS), max_size=40),
    retrieval=st.integers(0, 3),
    combination=st.just({}) | st.dictionaries(st.sampled_from(COMPONENTS), FINITE, max_size=4),
    blend=blend_weights(FINITE),
    flags=FLAGS,
)
WILD_SEARCHES = st.builds(
    search_request,
    query=st.sampled_from(QUERIES) | TEXT,
    user_id=st.sampled_from(["", *USERS]) | TEXT,
    top_k=st.none() | INT32,
    filters=FILTER_LISTS,
    candidates=CANDIDATES,
    retrieval=st.integers(0, 3) | INT32,
    combination=st.just({}) | st.dictionaries(WEIGHT_NAMES, DOUBLES, max_size=5)
    | st.builds(lambda names, value: dict.fromkeys(names, value), many(WEIGHT_NAMES, [100, 1000]), DOUBLES),
    blend=blend_weights(),
    flags=FLAGS,
)
SEARCHES = st.one_of(VALID_SEARCHES, WILD_SEARCHES, WILD_SEARCHES)
# A short deadline for some searches: DEADLINE_EXCEEDED is then a right answer.
DEADLINES = st.one_of(st.just(CALL_TIMEOUT_S), st.just(CALL_TIMEOUT_S), st.just(CALL_TIMEOUT_S),
                      st.floats(0.001, 0.3))


# Feedback events

def _timestamp(seconds: int, nanos: int) -> Timestamp:
    return Timestamp(seconds=seconds, nanos=nanos)


TIMES = st.one_of(
    st.none(),
    # recent: valid
    st.builds(lambda ago: _timestamp(int(time.time()) - ago, 0), st.integers(0, 10 ** 8)),
    # around now and the allowed 5 minutes in the future
    st.builds(lambda ahead, nanos: _timestamp(int(time.time()) + ahead, nanos), st.integers(-5, 400),
              st.integers(0, 999_999_999)),
    st.builds(_timestamp, INT64, INT32),
)


def feedback_event(event_id, user_id, product_id, kind, when, query, quantity, request_id, position):
    event = ranking_pb2.FeedbackEvent(event_id=event_id, user_id=user_id, product_id=product_id, type=kind,
                                      query=query, request_id=request_id)
    if when is not None:
        event.time.CopyFrom(when)
    if quantity is not None:
        event.quantity = quantity
    if position is not None:
        event.position = position
    return event


NOW = st.builds(lambda ago: _timestamp(int(time.time()) - ago, 0), st.integers(0, 10 ** 7))
VALID_EVENTS = st.builds(
    feedback_event,
    event_id=st.builds(lambda: uuid.uuid4().hex) | st.text(min_size=1, max_size=20).filter(str.strip),
    user_id=st.sampled_from(USERS) | st.text(min_size=1, max_size=20).filter(str.strip),
    product_id=st.sampled_from(DEMO_IDS),
    kind=st.integers(1, 4),
    when=NOW,
    query=st.just("") | st.sampled_from(QUERIES) | st.text(max_size=30),
    quantity=st.none() | st.integers(1, 10_000),
    request_id=st.just("") | st.builds(lambda: uuid.uuid4().hex),
    position=st.none() | st.integers(0, 1000),
)


def wild_events(text: st.SearchStrategy[str]) -> st.SearchStrategy[ranking_pb2.FeedbackEvent]:
    """Events of any field values, their texts drawn from `text`."""
    return st.builds(feedback_event, event_id=st.builds(lambda: uuid.uuid4().hex) | text,
                     user_id=st.sampled_from(USERS) | text, product_id=st.sampled_from(DEMO_IDS) | text,
                     kind=st.integers(0, 4) | INT32, when=TIMES, query=st.just("") | text, quantity=st.none() | INT32,
                     request_id=st.just("") | text, position=st.none() | INT32)


EVENTS = st.one_of(VALID_EVENTS, wild_events(TEXT), wild_events(TEXT))
# What an enormous stream is cycled from: short texts only (thousands of copies of a 100,000-character field would
# only measure this process's memory).
SMALL_EVENTS = st.one_of(VALID_EVENTS, wild_events(SHORT_TEXT))


def stream_of(drawn: list[ranking_pb2.FeedbackEvent], count: int) -> list[ranking_pb2.FeedbackEvent]:
    """`count` events cycled from the drawn ones, each with its own event id past the first round."""
    events = []
    for number in range(count):
        event = ranking_pb2.FeedbackEvent()
        event.CopyFrom(drawn[number % len(drawn)])
        if number >= len(drawn):
            event.event_id = f"{event.event_id[:200]}#{number}"
        events.append(event)
    return events


STREAMS = st.one_of(st.just([]), st.lists(EVENTS, max_size=12))
# A few thousand events cycled from a few drawn ones. On a catalog in Milvus fewer: each event's product is read
# from Milvus on its own (see test_a_stream_of_500_events_on_milvus_answers_within_a_second).
ENORMOUS_STREAMS = st.builds(stream_of, st.lists(SMALL_EVENTS, min_size=1, max_size=4),
                             st.sampled_from([500, 1000, 2000, 3000]))
MILVUS_STREAMS = st.builds(stream_of, st.lists(SMALL_EVENTS, min_size=1, max_size=4), st.sampled_from([20, 50]))


# Admin: rollouts, experiments

MODELS = st.sampled_from(["reranker", "bi_encoder", "multilingual_encoder", "", "Reranker", "reranker "]) | TEXT
VERSIONS = st.sampled_from(["1", "2", "3", "0", "01", "-1", " 1", "1.0", "١", "²", "99999999999999999999"]) | TEXT
ARMS = st.one_of(
    st.sampled_from(["default", "fused", "no-cross-encoder", "no-personalization", "reranker=1", "reranker=2",
                     "reranker=١", "weights=bm25:1+dense:0.5", "weights=reranker:1", "fused,reranker=1",
                     "no-cross-encoder,no-personalization", "weights=", "weights=bm25:nan", "weights=bm25:1e999",
                     "weights=bm25:1:2", "weights=+", "DEFAULT", " fused ", ",,", "reranker=", "=", ":"]),
    st.lists(st.sampled_from(["default", "fused", "no-cross-encoder", "no-personalization", "reranker=1"]),
             min_size=1, max_size=3).map(",".join),
    st.builds(lambda weights: "weights=" + "+".join(f"{name}:{value!r}" for name, value in weights.items()),
              st.dictionaries(WEIGHT_NAMES, DOUBLES, min_size=1, max_size=4)),
    TEXT,
)
EXPERIMENT_NAMES = st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True) | st.sampled_from(
    ["", "a" * 64, "a" * 65, "fuzz", "über", "a b"]) | TEXT
METHODS = st.sampled_from(["interleave", "ab", "", "AB", "interleaved"]) | TEXT
SHARES = st.one_of(st.sampled_from([0.0, 1.0, 0.5, 1e-9, 1.0000001, -0.0]), DOUBLES)
VALID_ARMS = ["default", "fused", "no-cross-encoder", "no-personalization", "reranker=1", "weights=bm25:1+dense:0.5",
              "no-cross-encoder,no-personalization"]
# (name, control, treatment, method, share): well-formed starts (which start, when the name is new), and any
EXPERIMENTS = st.one_of(
    st.tuples(st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True), st.sampled_from(VALID_ARMS),
              st.sampled_from(VALID_ARMS), st.sampled_from(["interleave", "ab"]), st.floats(1e-6, 1.0)),
    st.tuples(EXPERIMENT_NAMES, ARMS, ARMS, METHODS, SHARES),
    st.tuples(EXPERIMENT_NAMES, ARMS, ARMS, METHODS, SHARES),
)
WRONG_TOKENS = [(("authorization", value),) for value in ("Bearer wrong", TOKEN, f"bearer {TOKEN}", f"Bearer {TOKEN} ")]
METADATA = st.one_of(st.just(AUTH), st.just(AUTH), st.just(AUTH), st.just(()), st.sampled_from(WRONG_TOKENS))


# Admin: the catalog

ATTRIBUTE_NAMES = st.sampled_from(["colour", "size", "stock", "price", "title", "product_id", "Price", ""]) | SHORT_TEXT
# The first FEED_PRODUCTS demo products are the enormous feeds' (their text stays as stored, so a feed embeds
# nothing); the other records and deletes draw the others.
FEED_PRODUCTS = 100
OTHER_IDS = DEMO_IDS[FEED_PRODUCTS:]
SHORT_IDS = st.sampled_from(OTHER_IDS) | st.builds(lambda number: f"fuzz-{number}", st.integers(0, 50)) | SHORT_TEXT
IDS = SHORT_IDS | TEXT


def product_record(product_id, title, description, brand, category, department, price, stock, image_url,
                   attributes) -> admin_pb2.ProductRecord:
    record = admin_pb2.ProductRecord(product_id=product_id, title=title, description=description, brand=brand,
                                     category=category, department=department, image_url=image_url,
                                     attributes=attributes)
    if price is not None:
        record.price = price
    if stock is not None:
        record.stock = stock
    return record


def stored_copy(number: int, price: float | None, stock: int | None) -> admin_pb2.ProductRecord:
    """A demo product as the catalog file has it, with a price and stock of our own: no embedding, few writes."""
    row = _ROWS[number]
    return product_record(row["product_id"], row["title"], row["description"], row["brand"], row["category"],
                          row["department"], price, stock, "", {})


# New products get a few distinct ids (fuzz-0 .. fuzz-50), so that most records after the first ones are updates of
# products already embedded, as a shop's catalog feed mostly is.
VALID_RECORDS = st.one_of(
    st.builds(product_record, product_id=st.builds(lambda number: f"fuzz-{number}", st.integers(0, 50)),
              title=st.sampled_from(QUERIES) | st.text(min_size=1, max_size=30).filter(str.strip),
              description=st.just("") | st.text(max_size=40), brand=st.just("") | st.sampled_from(BRANDS),
              category=st.just("") | st.sampled_from(CATEGORIES), department=st.just("") | st.sampled_from(DEPARTMENTS),
              price=st.none() | st.floats(0, 10_000), stock=st.none() | st.integers(0, 10 ** 6),
              image_url=st.just("") | st.just("https://example.com/a.png"),
              attributes=st.dictionaries(st.sampled_from(["colour", "size", "material"]), st.text(max_size=10),
                                         max_size=2)),
    st.builds(stored_copy, st.integers(FEED_PRODUCTS, len(_ROWS) - 1), st.none() | st.floats(0, 2000),
              st.none() | st.integers(0, 100)),
)
WILD_RECORDS = st.builds(product_record, product_id=IDS, title=TEXT, description=TEXT, brand=SHORT_TEXT,
                         category=SHORT_TEXT, department=SHORT_TEXT, price=st.none() | DOUBLES,
                         stock=st.none() | INT64, image_url=SHORT_TEXT,
                         attributes=st.dictionaries(ATTRIBUTE_NAMES, TEXT, max_size=3))
RECORDS = st.one_of(VALID_RECORDS, WILD_RECORDS, WILD_RECORDS)


def feed(prices: list[float], count: int, invalid_title: str) -> list[admin_pb2.ProductRecord]:
    """A feed of `count` records: the feed's demo products with new prices and stock (their stored text: nothing is
    embedded), then records rejected by validation (no title, or no product id)."""
    records = [stored_copy(number, prices[number % len(prices)], number % 7) for number in range(FEED_PRODUCTS)]
    records += [admin_pb2.ProductRecord(product_id="" if number % 2 else f"fuzz-bad-{number}",
                                        title="" if not number % 2 else invalid_title)
                for number in range(count - len(records))]
    return records


# New or changed products are embedded through Triton (~10 ms each here): a stream that creates hundreds of them takes
# seconds by nature, so the streams drawn here create at most a few.
RECORD_STREAMS = st.one_of(st.just([]), st.lists(RECORDS, max_size=8))
ENORMOUS_RECORD_STREAMS = st.builds(feed, st.lists(st.floats(0, 2000), min_size=1, max_size=3),
                                    st.sampled_from([1000, 2000, 3000]), SHORT_TEXT)


# ---------------------------------------------------------------------------------------------- known bugs

# Each names its regression test below; remove the entry with the xfail once the bug is fixed. None is pinned now.


def known_bug(rpc: str, request, code: grpc.StatusCode, details: str, milvus: bool) -> str:
    """The pinned bug that explains this outcome of `request`, or ''."""
    return ""


# ----------------------------------------------------------------------------------------------------- services

def _seed_users(ranking: ranking_pb2_grpc.RankingStub) -> None:
    """A few events for each of USERS, so that their searches are personalized."""
    now = int(time.time())
    events = [ranking_pb2.FeedbackEvent(event_id=f"seed-{user}-{number}", user_id=user,
                                        product_id=DEMO_IDS[(7 * number + len(user)) % len(DEMO_IDS)],
                                        type=ranking_pb2.EVENT_TYPE_PURCHASE,
                                        time=Timestamp(seconds=now - 3600 * number))
              for user in USERS for number in range(6)]
    result = ranking.FeedbackStream(iter(events), timeout=60)
    assert result.accepted + result.duplicates == len(events), result


@pytest.fixture(scope="module")
def plain(settings, triton, demo_index, tmp_path_factory):
    """The demo index in process, reranking off."""
    paths = scratch_state(tmp_path_factory.mktemp("fuzz-plain"))  # never the checkout's .shoprank
    service = ServiceThread(dataclasses.replace(settings, index_dir=demo_index, triton_url=triton.url,
                                                rerank_depth=0, **paths))
    try:
        service.start()
        with grpc.insecure_channel(service.address) as channel:
            calls = Calls(channel)
            _seed_users(calls.ranking)
            yield calls
            print("\n" + calls.report("plain (index, reranking off)"))
    finally:
        service.stop()


@contextlib.contextmanager
def service_on_milvus(shop: str, settings, triton, milvus, scratch: Path):
    """The whole pipeline (cross-encoder on) over the demo catalog as `shop` in Milvus, with the admin API: its
    Calls."""
    url = demo_catalog_in_milvus(milvus.url, shop, triton, settings)
    service = ServiceThread(dataclasses.replace(settings, catalog_store=url, shop=shop, triton_url=triton.url,
                                                admin_token=TOKEN, admin_port=0, **scratch_state(scratch)))
    try:
        service.start()
        with grpc.insecure_channel(service.address) as channel, \
                grpc.insecure_channel(f"127.0.0.1:{service.service.admin_port}") as admin_channel:
            yield Calls(channel, admin_channel, milvus=True)
    finally:
        service.stop()


@pytest.fixture(scope="module")
def full(settings, triton, milvus, tmp_path_factory):
    """The whole pipeline (cross-encoder on) over this module's own shop in Milvus, with the admin API."""
    with service_on_milvus(SHOP, settings, triton, milvus, tmp_path_factory.mktemp("fuzz-full")) as calls:
        _seed_users(calls.ranking)
        yield calls
        print("\n" + calls.report("full (Milvus, cross-encoder, admin)"))


@pytest.fixture(scope="module")
def fresh_shops(settings, triton, tmp_path_factory):
    """Opens a service like `full`'s over a shop of its own in a Milvus Lite server of its own, new each time
    (`with fresh_shops(name) as calls`). The session's server never holds the churned shop: dropping one there made
    Milvus Lite answer the next calls seconds late."""
    @contextlib.contextmanager
    def open_shop(name: str):
        scratch = tmp_path_factory.mktemp(f"fuzz-{name}")
        with LocalMilvus(scratch / "milvus") as server, \
                service_on_milvus(f"{SHOP}-{name}", settings, triton, server, scratch) as calls:
            yield calls
    return open_shop


# ------------------------------------------------------------------------------------------------- properties

def check_search(calls: Calls, request: ranking_pb2.SearchRequest, deadline: float) -> None:
    allowed = CLIENT_ERRORS | ({C.DEADLINE_EXCEEDED} if deadline < CALL_TIMEOUT_S else set())
    code, response, _ = calls("Search", request, timeout=deadline, allowed=allowed)
    if code != C.OK:
        return
    top_k = request.top_k if request.HasField("top_k") else 10
    ids = [item.product_id for item in response.items]
    assert len(ids) <= top_k, f"{len(ids)} items for top_k {top_k}"
    assert len(set(ids)) == len(ids), f"a product answered twice: {Counter(ids).most_common(3)}"
    assert all(math.isfinite(item.score) for item in response.items), [item.score for item in response.items]
    if request.candidate_ids:
        assert set(ids) <= set(request.candidate_ids), f"not candidates: {set(ids) - set(request.candidate_ids)}"


def test_search_on_the_index_without_reranking(plain):
    @examples(1 - FULL_PIPELINE_SHARE)
    @given(SEARCHES, DEADLINES)
    def search(request, deadline):
        check_search(plain, request, deadline)

    search()
    plain.check_health()


def test_search_on_the_full_pipeline_over_milvus(full):
    @examples(FULL_PIPELINE_SHARE)
    @given(SEARCHES, DEADLINES)
    def search(request, deadline):
        check_search(full, request, deadline)

    search()
    full.check_health()


def test_feedback(plain, full):
    @examples(1 - MILVUS_SHARE)
    @given(EVENTS)
    def feedback(event):
        plain("Feedback", event)

    @examples(MILVUS_SHARE)
    @given(EVENTS)
    def feedback_on_milvus(event):  # the product is looked up in Milvus
        full("Feedback", event)

    feedback()
    feedback_on_milvus()
    plain.check_health()
    full.check_health()


def check_stream(calls: Calls, events: list[ranking_pb2.FeedbackEvent]) -> None:
    code, result, _ = calls("FeedbackStream", events)
    if code == C.OK:
        assert result.received == len(events)
        assert result.accepted + result.duplicates + result.rejected == len(events), result
        assert len(result.errors) == min(result.rejected, 1000)


@pytest.mark.parametrize("on_index, on_milvus, index_share, milvus_share", [
    (STREAMS, STREAMS, 1 - MILVUS_SHARE, MILVUS_SHARE),
    (ENORMOUS_STREAMS, MILVUS_STREAMS, ENORMOUS_SHARE, ENORMOUS_SHARE),
], ids=["streams", "enormous-streams"])
def test_feedback_stream(plain, full, on_index, on_milvus, index_share, milvus_share):
    @examples(index_share)
    @given(on_index)
    def stream(events):
        check_stream(plain, events)

    @examples(milvus_share)
    @given(on_milvus)
    def stream_on_milvus(events):
        check_stream(full, events)

    stream()
    stream_on_milvus()
    plain.check_health()
    full.check_health()


def test_forget_user(plain):
    @examples()
    @given(st.sampled_from(USERS) | TEXT)
    def forget(user_id):
        plain("ForgetUser", ranking_pb2.ForgetUserRequest(user_id=user_id))

    forget()
    plain.check_health()


# The admin API: every call also with a missing or wrong token now and then (UNAUTHENTICATED).

def test_start_rollout(full):
    @examples()
    @given(MODELS, VERSIONS, INT32, st.booleans(), st.booleans(), METADATA)
    def start(model, version, percent, shadow, interleave, metadata):
        full("StartRollout", admin_pb2.StartRolloutRequest(model=model, version=version, percent=percent,
                                                           shadow=shadow, interleave=interleave), metadata=metadata)

    start()
    full.check_health()


def test_shift_promote_rollback_and_status_of_rollouts(full):
    @examples()
    @given(MODELS, INT32, METADATA)
    def shift(model, percent, metadata):
        full("ShiftRollout", admin_pb2.ShiftRolloutRequest(model=model, percent=percent), metadata=metadata)

    @examples()
    @given(MODELS, TEXT, METADATA)
    def promote(model, reason, metadata):
        full("PromoteRollout", admin_pb2.ModelRequest(model=model, reason=reason), metadata=metadata)

    @examples()
    @given(MODELS, TEXT, METADATA)
    def rollback(model, reason, metadata):
        full("RollbackRollout", admin_pb2.ModelRequest(model=model, reason=reason), metadata=metadata)

    @examples()
    @given(MODELS, METADATA)
    def status(model, metadata):
        full("GetRolloutStatus", admin_pb2.ModelRequest(model=model), metadata=metadata)

    for prop in (shift, promote, rollback, status):
        prop()
    full.check_health()


def test_experiments(full):
    """Start, stop and status; an experiment that started is stopped at once, so that the next one may start."""
    @examples()
    @given(EXPERIMENTS, METADATA)
    def start(experiment, metadata):
        name, control, treatment, method, share = experiment
        code, _, _ = full("StartExperiment", admin_pb2.StartExperimentRequest(
            name=name, control=control, treatment=treatment, method=method, share=share), metadata=metadata)
        if code == C.OK:
            full("StopExperiment", admin_pb2.ExperimentRequest(name=name), metadata=AUTH, allowed={C.OK})

    @examples()
    @given(EXPERIMENT_NAMES, METADATA)
    def stop(name, metadata):
        full("StopExperiment", admin_pb2.ExperimentRequest(name=name), metadata=metadata)

    @examples()
    @given(EXPERIMENT_NAMES | st.just(""), METADATA)
    def status(name, metadata):
        full("GetExperimentStatus", admin_pb2.ExperimentRequest(name=name), metadata=metadata)

    for prop in (start, stop, status):
        prop()
    full.check_health()


def test_a_request_over_the_size_limit_is_refused_at_once(plain):
    """A 9 MiB query passes the public port's 8 MiB receive limit: RESOURCE_EXHAUSTED from gRPC, quickly."""
    code, _, details = plain("Search", ranking_pb2.SearchRequest(query="x" * (9 * 1024 * 1024)),
                             allowed={C.RESOURCE_EXHAUSTED})
    assert "larger than max" in details


# ------------------------------------------------------------------------------ bugs found (pinned until fixed)

def _outcome(calls: Calls, rpc: str, request, metadata=AUTH) -> tuple[str, str, object]:
    """(status name, details, response) of one call, unchecked."""
    method = calls._callable(rpc)
    streaming = METHODS_BY_NAME[rpc].client_streaming
    payload = [message.SerializeToString() for message in request] if streaming else request.SerializeToString()
    try:
        return "OK", "", method(iter(payload) if streaming else payload, metadata=metadata, timeout=60)
    except grpc.RpcError as error:
        return error.code().name, error.details() or "", None


LONG = "x" * 20_000


@pytest.mark.parametrize("rpc, request_, expected", [
    ("Search", ranking_pb2.SearchRequest(query="drill", filters=[ranking_pb2.Filter(field=LONG)]), "INVALID_ARGUMENT"),
    ("GetRolloutStatus", admin_pb2.ModelRequest(model=LONG), "FAILED_PRECONDITION"),
    ("GetProduct", admin_pb2.GetProductRequest(product_id=LONG), "NOT_FOUND"),
    ("StopExperiment", admin_pb2.ExperimentRequest(name=LONG), "FAILED_PRECONDITION"),
], ids=["Search", "GetRolloutStatus", "GetProduct", "StopExperiment"])
def test_a_long_bad_input_is_answered_with_its_own_status(full, rpc, request_, expected):
    code, details, _ = _outcome(full, rpc, request_)
    assert code == expected, f"{code}: {details[:200]}"


@pytest.mark.parametrize("rpc", ["Feedback", "FeedbackStream"])
def test_feedback_with_a_control_character_in_its_product_id_on_milvus(full, rpc):
    event = ranking_pb2.FeedbackEvent(event_id=uuid.uuid4().hex, user_id="fuzz-user-0", product_id="D00\x0101",
                                      type=ranking_pb2.EVENT_TYPE_CLICK, time=Timestamp(seconds=int(time.time())))
    if rpc == "Feedback":  # a bad event: INVALID_ARGUMENT
        code, details, _ = _outcome(full, rpc, event)
        assert code == "INVALID_ARGUMENT", f"{code}: {details}"
    else:  # a bad event in a stream: reported by its index, the others kept
        good = ranking_pb2.FeedbackEvent(event_id=uuid.uuid4().hex, user_id="fuzz-user-0", product_id=DEMO_IDS[0],
                                         type=ranking_pb2.EVENT_TYPE_CLICK, time=Timestamp(seconds=int(time.time())))
        code, details, result = _outcome(full, rpc, [event, good])
        assert code == "OK", f"{code}: {details}"
        assert (result.accepted, result.rejected, [error.index for error in result.errors]) == (1, 1, [0])


def test_an_upserted_record_whose_id_holds_a_control_character_is_reported_and_the_others_kept(full):
    records = [admin_pb2.ProductRecord(product_id="fuzz-ok-1", title="Wombatine camping mug"),
               admin_pb2.ProductRecord(product_id="fuzz\x01bad", title="Wombatine camping plate")]
    code, details, result = _outcome(full, "UpsertProducts", records)
    assert code == "OK", f"{code}: {details}"
    assert (result.stored, [error.index for error in result.errors]) == (1, [1])


def test_a_product_id_with_an_apostrophe_is_stored(full):
    record = admin_pb2.ProductRecord(product_id="men's-shirt", title="Quokkabrite flannel shirt")
    code, details, result = _outcome(full, "UpsertProducts", [record])
    assert code == "OK", f"{code}: {details}"
    assert result.stored + len(result.errors) == 1
    # stored (milvus.py keeps an apostrophe out of Milvus Lite's keys): read, found, deleted as any other
    assert result.stored == 1, result
    code, details, stored = _outcome(full, "GetProduct", admin_pb2.GetProductRequest(product_id="men's-shirt"))
    assert (code, stored.product_id if stored else None) == ("OK", "men's-shirt"), details
    code, details, found = _outcome(full, "Search", ranking_pb2.SearchRequest(query="quokkabrite flannel shirt"))
    assert code == "OK" and "men's-shirt" in [item.product_id for item in found.items], details
    code, details, deleted = _outcome(full, "DeleteProducts",
                                      admin_pb2.DeleteProductsRequest(product_ids=["men's-shirt"]))
    assert (code, deleted.deleted if deleted else None) == ("OK", 1), details
    assert _outcome(full, "GetProduct", admin_pb2.GetProductRequest(product_id="men's-shirt"))[0] == "NOT_FOUND"


@pytest.mark.parametrize("service, filters", [
    ("plain", [ranking_pb2.Filter(field="brand", any_of=BRANDS)] * 1000),
    ("full", [ranking_pb2.Filter(field="brand", any_of=[f"{BRANDS[number % len(BRANDS)]}{number}"
                                                        for number in range(100_000)])]),
], ids=["index-1000-filters", "milvus-100000-values"])
def test_filters_with_50000_values_in_all_are_answered_within_a_second(request, service, filters):
    calls = request.getfixturevalue(service)
    started = time.perf_counter()
    code, details, _ = _outcome(calls, "Search", ranking_pb2.SearchRequest(query="drill", filters=filters))
    took = time.perf_counter() - started
    assert code in ("OK", "INVALID_ARGUMENT"), f"{code}: {details}"
    assert took <= MAX_CALL_S, f"{took:.2f} s"


def test_a_search_with_50_filters_on_milvus_is_answered_as_on_the_index(full, plain):
    request = ranking_pb2.SearchRequest(query="drill", filters=[_filter("price", [], 1.0, 2000.0)] * 50)
    assert _outcome(plain, "Search", request)[0] == "OK"
    code, details, _ = _outcome(full, "Search", request)
    assert code in ("OK", "INVALID_ARGUMENT"), f"{code}: {details}"


def test_a_stream_of_1000_events_on_milvus_answers_within_a_second(full):
    now = int(time.time())
    events = [ranking_pb2.FeedbackEvent(event_id=f"stream-1000-{number}", user_id="fuzz-user-1",
                                        product_id=DEMO_IDS[number % len(DEMO_IDS)], type=ranking_pb2.EVENT_TYPE_VIEW,
                                        time=Timestamp(seconds=now)) for number in range(1000)]
    started = time.perf_counter()
    code, details, _ = _outcome(full, "FeedbackStream", events)
    took = time.perf_counter() - started
    assert code == "OK", f"{code}: {details}"
    assert took <= MAX_CALL_S, f"{took:.2f} s"


def test_a_feed_repeating_one_product_2000_times_answers_within_a_second(full):
    records = [stored_copy(0, 10.0, 5)] * 2000
    started = time.perf_counter()
    code, details, result = _outcome(full, "UpsertProducts", records)
    took = time.perf_counter() - started
    assert code == "OK", f"{code}: {details}"
    assert result.stored == 2000
    assert took <= MAX_CALL_S, f"{took:.2f} s"


# ------------------------------------------------------------------------ the catalog (last: it changes the shop)
# Thousands of upserts and deletes slow Milvus Lite's reads down about tenfold (docs/fuzzing.md): the catalog calls
# run on fresh Milvus Lite servers of their own, never the session's, which `full` and the other modules read.

def check_upsert(calls: Calls, records: list[admin_pb2.ProductRecord], metadata) -> None:
    code, result, _ = calls("UpsertProducts", records, metadata=metadata)
    if code == C.OK:
        assert result.received == len(records), result
        assert result.stored + len(result.errors) == len(records), result
        assert result.stored == result.created + result.reembedded + result.fields_updated + result.unchanged


def test_catalog_changes(fresh_shops):
    """The catalog calls, in CATALOG_ROUNDS rounds, each on a fresh shop in a fresh Milvus Lite server with examples of
    its own (a seed per round): one shop churned by thousands of upserts and deletes slows Milvus Lite's reads down
    about tenfold (docs/fuzzing.md), which is not what is fuzzed here."""
    for round_ in range(CATALOG_ROUNDS):
        with fresh_shops(f"catalog-{round_}") as calls:
            share = 1.0 / CATALOG_ROUNDS

            @seed(round_)
            @examples(share)
            @given(RECORD_STREAMS, METADATA)
            def upsert(records, metadata):
                check_upsert(calls, records, metadata)

            @seed(round_)
            @examples(share)
            @given(st.one_of(st.lists(IDS, max_size=5), many(SHORT_IDS, [1000, 5000])), METADATA)
            def delete(ids, metadata):
                calls("DeleteProducts", admin_pb2.DeleteProductsRequest(product_ids=ids), metadata=metadata)

            @seed(round_)
            @examples(share)
            @given(IDS, METADATA)
            def get(product_id, metadata):
                calls("GetProduct", admin_pb2.GetProductRequest(product_id=product_id), metadata=metadata)

            @seed(round_)
            @examples(ENORMOUS_SHARE * share)
            @given(ENORMOUS_RECORD_STREAMS)
            def enormous_upsert(records):
                check_upsert(calls, records, AUTH)

            for prop in (enormous_upsert, upsert, get, delete):
                prop()
            calls.check_health()
            print("\n" + calls.report(f"catalog round {round_ + 1} of {CATALOG_ROUNDS} (a fresh Milvus Lite server)"))
