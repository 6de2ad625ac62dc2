"""loadtest.overload_check: the figures of a phase, when the service counts as recovered, and the one summary line."""

from __future__ import annotations

import math

from loadtest.open_loop import Call, read, write
from loadtest.overload_check import figures, in_flight_bound, recovered_after, summary_line, within_objective


def calls(start: float, count: int, latency_ms: float, status: str = "OK", rate: float = 10.0) -> list[Call]:
    return [Call(start + i / rate, latency_ms, status) for i in range(count)]


def test_a_phase_counts_answers_refusals_and_other_errors_apart():
    phase = figures("overload", 30, calls(0, 90, 50.0) + calls(0, 9, 2.0, "RESOURCE_EXHAUSTED")
                    + calls(0, 1, 2000.0, "DEADLINE_EXCEEDED"))
    assert (phase["requests"], phase["ok"], phase["shed"], phase["other_errors"]) == (100, 90, 9, 1)
    assert phase["accepted_p99_ms"] == 50.0 and phase["shed_p99_ms"] == 2.0
    assert phase["errors"] == ["DEADLINE_EXCEEDED"]
    assert phase["full_per_s"] == 30 * 90 / 100  # every answer full
    degraded = [Call(call.sent_s, call.latency_ms, "OK", True) for call in calls(0, 50, 20.0)]
    assert figures("capacity 10", 10, calls(0, 50, 80.0) + degraded)["full_per_s"] == 5.0
    assert not within_objective(phase, 100.0)  # an error and 9% refused
    assert within_objective(figures("capacity 10", 10, calls(0, 100, 80.0)), 100.0)
    assert not within_objective(figures("capacity 20", 20, calls(0, 100, 120.0)), 100.0)


def test_recovery_is_the_first_second_from_which_every_second_is_within_the_objective():
    slow_then_fast = calls(0, 30, 400.0) + calls(3, 70, 40.0)  # seconds 0-2 slow, then fast to the end
    assert recovered_after(slow_then_fast, 100.0, 10) == 3.0
    refused_late = calls(0, 90, 40.0) + [Call(9.5, 1.0, "RESOURCE_EXHAUSTED")]
    assert recovered_after(refused_late, 100.0, 10) == -1.0
    assert recovered_after(calls(0, 100, 40.0), 100.0, 10) == 0.0


def test_the_summary_line_has_exactly_the_promised_fields():
    overload = calls(0, 95, 60.0) + calls(0, 5, 3.0, "RESOURCE_EXHAUSTED")
    recovery = calls(0, 50, 30.0)
    line = summary_line(overload, recovery, 2.0, 15.0)
    assert line == ("requests=150 ok=145 shed=5 other_errors=0 accepted_p99_ms=60 shed_p99_ms=3 recovered_s=2 "
                    "capacity_rps=15")
    assert "shed_p99_ms=nan" in summary_line(calls(0, 10, 5.0), [], -1.0, 5.0)


def test_the_generators_rows_read_back(tmp_path):
    rows = [Call(0.1, 12.5, "OK", True), Call(0.0, 3.0, "RESOURCE_EXHAUSTED", False, "100")]
    write(rows, tmp_path / "calls.csv")
    back = read(tmp_path / "calls.csv")
    assert [call.status for call in back] == ["RESOURCE_EXHAUSTED", "OK"]  # in the order they were sent
    assert back[0].retry_after_ms == "100" and back[1].degraded and math.isclose(back[1].latency_ms, 12.5)


def test_the_bound_is_the_tail_of_the_calls_a_call_found_in_flight():
    # One call at a time, each done before the next: every call found only itself.
    assert in_flight_bound(calls(0, 100, 50.0, rate=10)) == 1
    # Each call lasts 250 ms and one comes every 100 ms: each finds two before it still in flight, and itself.
    assert in_flight_bound(calls(0, 100, 250.0, rate=10)) == 3
    # A burst of 5 at once after 100 calls one at a time: they find 1 to 5 in flight. A bound of 4 refuses the
    # fifth alone, under 1% of the 105 calls.
    burst = calls(0, 100, 50.0, rate=10) + [Call(20.0, 500.0, "OK")] * 5
    assert in_flight_bound(burst) == 4
    assert in_flight_bound([]) == 1
