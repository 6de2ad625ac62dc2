"""`make soak`'s pure parts: which process is which part of the stack, the fitted growth over the judged window, the
p99 of an interval and whether it stayed steady, the samples' CSV and the summary line."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import time

import pytest

from loadtest.catalog_check import ChangeStream
from loadtest.soak import (
    WARMUP,
    Sample,
    classify,
    fitted_growth_pct,
    flat,
    growth,
    interval_p99,
    p99_steady,
    process_groups,
    process_table,
    resources,
    sample,
    summary_line,
    surplus_deletes,
    write_samples,
)


@pytest.mark.parametrize("cmdline, part", [
    ("/venv/lib/python3.11/site-packages/pytriton/tritonserver/bin/tritonserver --model-repository=/m", "triton"),
    ("redis-server 127.0.0.1:6379", "redis"),
    ("/venv/bin/python -m cli serve --catalog-store milvus://127.0.0.1:1 --profile-store redis://127.0.0.1:2/0",
     "orchestrator"),
    ("/venv/lib/python3.11/site-packages/milvus_lite/lib/milvus /tmp/m/milvus.db 127.0.0.1:19530 ERROR", "milvus"),
    ("/venv/bin/python -m loadtest.open_loop --target 127.0.0.1:1 --rate 10", None),
    ("/usr/bin/milvusctl status", None),
])
def test_each_part_of_the_stack_is_told_by_its_command_line(cmdline, part):
    assert classify(cmdline) == part


def test_a_part_holds_its_process_and_every_descendant_and_strangers_are_left_out():
    table = {
        10: (1, "python -m loadtest.soak"),
        11: (10, "/x/bin/tritonserver --grpc-port=1"),
        12: (11, "/x/backends/python/triton_python_backend_stub model_a"),
        13: (11, "/x/backends/python/triton_python_backend_stub model_b"),
        14: (12, "a grandchild of Triton"),
        20: (10, "python -m cli serve --index i"),
        30: (10, "python -m loadtest.open_loop --rate 10"),
        31: (30, "redis-server started by something else"),
        40: (1, "redis-server not ours"),
    }
    assert process_groups(table, 10) == {"triton": [11, 12, 13, 14], "orchestrator": [20]}


def test_the_fitted_growth_is_the_lines_rise_over_the_window_in_percent_of_its_start():
    times = [0.0, 10.0, 20.0, 30.0, 40.0]
    assert fitted_growth_pct(times, [100.0, 101.0, 102.0, 103.0, 104.0]) == pytest.approx(4.0)
    assert fitted_growth_pct(times, [100.0, 99.0, 98.0, 97.0, 96.0]) == pytest.approx(-4.0)
    assert fitted_growth_pct(times, [100.0] * 5) == pytest.approx(0.0)


def test_one_outlying_sample_moves_the_fitted_growth_less_than_a_first_and_last_comparison():
    times = [float(t) for t in range(0, 100, 10)]
    values = [100.0] * 9 + [110.0]  # a spike at the very last sample
    assert fitted_growth_pct(times, values) < 10.0 * 0.6


def test_fewer_than_two_samples_or_no_time_between_them_grow_nothing():
    assert fitted_growth_pct([], []) == 0.0
    assert fitted_growth_pct([5.0], [100.0]) == 0.0
    assert fitted_growth_pct([5.0, 5.0], [100.0, 200.0]) == 0.0


def test_growth_reads_only_the_window_after_the_warm_up_and_one_part():
    duration = 100.0
    samples = [Sample(at, "orchestrator", 1, int(1000 + (500 if at < WARMUP * duration else at)), 40)
               for at in range(0, 101, 10)]
    samples += [Sample(at, "redis", 1, 10 * at + 1, 8) for at in range(0, 101, 10)]
    inside = [at for at in range(0, 101, 10) if at >= WARMUP * duration]
    expected = fitted_growth_pct([float(at) for at in inside], [1000.0 + at for at in inside])
    assert growth(samples, "orchestrator", duration, "rss_kb") == pytest.approx(expected)
    assert growth(samples, "orchestrator", duration, "fds") == pytest.approx(0.0)


def test_an_intervals_p99_takes_the_calls_sent_inside_it():
    calls = [(0.5, 10.0), (1.5, 1000.0)] + [(1.0 + i / 100, 20.0) for i in range(99)]
    assert interval_p99(calls, 1.0, 2.0) == pytest.approx(20.0 + 0.01 * 980.0, rel=0.1)
    assert interval_p99(calls, 0.0, 1.0) == 10.0
    assert math.isnan(interval_p99(calls, 5.0, 6.0))


@pytest.mark.parametrize("first, last, steady", [
    (100.0, 120.0, True), (100.0, 200.0, True), (100.0, 201.0, False), (10.0, 60.0, True), (10.0, 70.0, False),
    (math.nan, 500.0, True),
])
def test_the_p99_is_steady_within_one_and_a_half_times_the_first_plus_50_ms(first, last, steady):
    assert p99_steady(first, last) is steady


def test_the_summary_line_names_every_figure_once():
    line = summary_line(10, 7200, 3000, 1800, 0, 0, 1.234, -0.5, 61.2, 70.9)
    assert line == ("minutes=10 searches=7200 events=3000 changes=1800 lost=0 failed=0 rss_growth_pct=1.2 "
                    "fd_growth_pct=-0.5 p99_first_ms=61 p99_last_ms=71")
    assert len({part.split("=")[0] for part in line.split()}) == len(line.split())


def test_the_samples_csv_has_a_row_per_time_with_each_parts_figures_and_the_intervals_p99(tmp_path):
    samples = [Sample(10.0, "orchestrator", 1, 1000, 40), Sample(10.0, "triton", 3, 5000, 90),
               Sample(20.0, "orchestrator", 1, 1010, 41)]
    searches = [(1.0, 30.0), (5.0, 50.0), (15.0, 70.0)]
    write_samples(samples, searches, 10.0, tmp_path / "samples.csv")
    rows = list(csv.DictReader((tmp_path / "samples.csv").open()))
    assert [row["t_s"] for row in rows] == ["10.0", "20.0"]
    assert rows[0]["orchestrator_rss_kb"] == "1000" and rows[0]["triton_fds"] == "90" and rows[1]["triton_fds"] == ""
    assert [row["searches"] for row in rows] == ["2", "1"]
    assert float(rows[1]["search_p99_ms"]) == 70.0


def test_resources_reads_this_process_and_a_gone_one_reads_zero():
    rss, fds = resources(os.getpid())
    assert rss > 1000 and fds >= 3
    assert resources(2**22 + 12345) == (0, 0)


def test_a_sample_measures_each_child_that_is_part_of_the_stack():
    child = subprocess.Popen(["bash", "-c", "exec -a redis-server sleep 30"])
    try:
        deadline = time.monotonic() + 5
        while child.pid not in process_groups(process_table(), os.getpid()).get("redis", []):
            assert time.monotonic() < deadline, "the child never became redis-server"
            time.sleep(0.02)  # until bash has become "redis-server"
        [redis] = [found for found in sample(1.0) if found.part == "redis"]
    finally:
        child.kill()
        child.wait()
    assert redis.at == 1.0 and redis.pids >= 1 and redis.rss_kb > 0 and redis.fds >= 3


@pytest.mark.parametrize("rss, fds, count, expected", [
    (4.9, 4.9, 22, True), (5.0, 0.0, 22, False), (1.0, 9.0, 22, True), (1.0, 14.0, 22, False),
    (1.0, 5.0, 200, False), (math.nan, 0.0, 22, False), (0.0, math.nan, 22, False),
])
def test_a_process_is_flat_under_5_percent_and_its_descriptors_may_add_two(rss, fds, count, expected):
    assert flat(rss, fds, count) is expected


def test_past_the_live_cap_the_oldest_untouched_products_are_deleted_and_the_size_holds():
    stream = ChangeStream(seed=3, prefix="soak")
    for _ in range(200):
        changes = stream.draw(3)
        extra = surplus_deletes(stream, changes, 40)
        assert not {change.product_id for change in extra} & {change.product_id for change in changes}
        assert all(change.kind == "delete" and change.after is None for change in extra)
        stream.acknowledge(changes + extra)
        assert len(stream.live()) <= 40
    assert len(stream.live()) >= 35  # new products keep coming, and the oldest go
    assert surplus_deletes(ChangeStream(seed=3), [], 40) == []
