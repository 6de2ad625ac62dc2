"""The impression log on real files: round trips, rotation, retention, the queue's bound, a full disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from core.errors import ConfigError, DataError
from orchestrator.experiments import impressions
from orchestrator.experiments.impressions import ImpressionLog, Impression, Interaction, log_files, read_log
from orchestrator.metrics import Metrics

ROOT = Path(__file__).resolve().parents[3]
DAY = 86400.0


def impression(number: int, products: int = 3) -> Impression:
    shown = tuple(f"product-{number}-{index}" for index in range(products))
    return Impression(f"request-{number}", 1_790_000_000.0 + number, "shop-1", "5f3a" * 8, "cordless drill",
                      shown, tuple("control" if index % 2 else "treatment" for index in range(products)),
                      experiment="reranker-v2", model_versions={"reranker": "2", "encoder": "1"})


def interaction(number: int) -> Interaction:
    return Interaction(f"request-{number}", 1_790_000_100.0 + number, f"event-{number}", "5f3a" * 8,
                       f"product-{number}-0", "click", 1, arm="treatment", experiment="reranker-v2", joined=True)


def wait_for(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def writer_alive(log: ImpressionLog) -> bool:
    """Whether this log's writer thread runs (other logs' writers, a service's in the same test process, may too)."""
    return log._thread is not None and log._thread.is_alive()


def test_records_round_trip_through_read_log_with_their_kind(tmp_path):
    log = ImpressionLog(tmp_path).start()
    assert log.record(impression(1)) and log.record(interaction(1)) and log.record(impression(2))
    log.close()

    records = list(read_log(tmp_path))
    assert [record["kind"] for record in records] == ["impression", "interaction", "impression"]
    assert records[0] == {"kind": "impression", "request_id": "request-1", "time": 1_790_000_001.0,
                          "shop": "shop-1", "user": "5f3a" * 8, "query": "cordless drill",
                          "products": ["product-1-0", "product-1-1", "product-1-2"],
                          "arms": ["treatment", "control", "treatment"], "experiment": "reranker-v2",
                          "model_versions": {"reranker": "2", "encoder": "1"}, "corrected_query": "",
                          "degraded": False}
    assert records[1] == {"kind": "interaction", "request_id": "request-1", "time": 1_790_000_101.0,
                          "event_id": "event-1", "user": "5f3a" * 8, "product_id": "product-1-0", "type": "click",
                          "position": 1, "arm": "treatment", "experiment": "reranker-v2", "joined": True}
    assert log.counts == {"written": 3, "dropped_full": 0, "dropped_error": 0, "dropped_closed": 0, "queued": 0}


def test_a_file_of_both_kinds_reads_in_pandas_and_pyarrow(tmp_path):
    pandas = pytest.importorskip("pandas")
    log = ImpressionLog(tmp_path).start()
    for number in range(5):
        log.record(impression(number, products=4))
        log.record(interaction(number))
    log.record(Impression("request-9", 1_790_000_009.0, "shop-2", "", "akkuschrauber ß ünd 電動", (), ()))
    log.close()
    [path] = log_files(tmp_path)

    frame = pandas.read_json(path, lines=True)
    assert len(frame) == 11
    assert frame["kind"].value_counts().to_dict() == {"impression": 6, "interaction": 5}
    assert frame["products"][0] == ["product-0-0", "product-0-1", "product-0-2", "product-0-3"]
    assert frame["query"].iloc[-1] == "akkuschrauber ß ünd 電動"

    pyarrow_json = pytest.importorskip("pyarrow.json")
    table = pyarrow_json.read_json(path)
    assert table.num_rows == 11


def test_rotation_by_size_makes_several_files_read_back_in_order(tmp_path):
    line = len(impressions.encode(impression(0)))
    log = ImpressionLog(tmp_path, rotate_bytes=line * 5).start()
    for number in range(100):
        assert log.record(impression(number))
    log.close()

    files = log_files(tmp_path)
    assert len(files) >= 20
    assert all(path.stat().st_size <= line * 5 + 5 for path in files)  # ids grow by a digit or two
    assert [record["request_id"] for record in read_log(tmp_path)] == [f"request-{n}" for n in range(100)]


def test_rotation_by_age_starts_a_new_file(tmp_path):
    log = ImpressionLog(tmp_path, rotate_s=0.2).start()
    log.record(impression(1))
    wait_for(lambda: log.counts["written"] == 1)
    time.sleep(0.4)
    log.record(impression(2))
    log.close()
    assert len(log_files(tmp_path)) == 2
    assert [record["request_id"] for record in read_log(tmp_path)] == ["request-1", "request-2"]


def test_two_logs_in_one_directory_never_share_a_file(tmp_path):
    first, second = ImpressionLog(tmp_path).start(), ImpressionLog(tmp_path).start()
    for number in range(50):
        first.record(impression(number))
        second.record(impression(1000 + number))
    first.close()
    second.close()
    assert len(log_files(tmp_path)) == 2
    assert sorted(record["request_id"] for record in read_log(tmp_path)) == sorted(
        [f"request-{n}" for n in range(50)] + [f"request-{1000 + n}" for n in range(50)])


def write_file(directory: Path, name: str, records: int, age_s: float) -> Path:
    path = directory / name
    path.write_bytes(b"".join(impressions.encode(impression(number)) for number in range(records)))
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_retention_deletes_the_files_last_written_before_it_and_nothing_else(tmp_path):
    old = write_file(tmp_path, "impressions-20261120T080000-7-000000.jsonl", 3, 8 * DAY)
    recent = write_file(tmp_path, "impressions-20261205T080000-7-000001.jsonl", 3, 2 * DAY)
    other = write_file(tmp_path, "notes.jsonl", 3, 30 * DAY)

    ImpressionLog(tmp_path, retention_s=7 * DAY).start().close()
    assert not old.exists()
    assert recent.exists() and other.exists()


def test_retention_deletes_the_oldest_files_past_the_total_size(tmp_path):
    line = len(impressions.encode(impression(0)))
    log = ImpressionLog(tmp_path, rotate_bytes=line * 4, max_total_bytes=line * 12 + 10).start()
    for number in range(100):
        log.record(impression(number))
    log.close()

    assert sum(path.stat().st_size for path in log_files(tmp_path)) <= line * 12 + 10
    kept = [record["request_id"] for record in read_log(tmp_path)]
    assert 8 <= len(kept) <= 12
    assert kept == [f"request-{n}" for n in range(100 - len(kept), 100)]


def test_retention_never_deletes_a_file_another_writer_holds(tmp_path):
    writing = ImpressionLog(tmp_path).start()
    writing.record(impression(1))
    wait_for(lambda: writing.counts["written"] == 1)
    [held] = log_files(tmp_path)
    os.utime(held, (time.time() - 30 * DAY,) * 2)

    ImpressionLog(tmp_path, retention_s=DAY, max_total_bytes=0).start().close()
    assert held.exists()
    writing.record(impression(2))
    writing.close()
    assert [record["request_id"] for record in read_log(tmp_path)] == ["request-1", "request-2"]


def test_record_refuses_past_the_queue_size_and_after_close_and_counts_it(tmp_path):
    log = ImpressionLog(tmp_path, queue_size=10)
    assert all(log.record(impression(number)) for number in range(10))
    assert not log.record(impression(10))
    assert log.counts == {"written": 0, "dropped_full": 1, "dropped_error": 0, "dropped_closed": 0, "queued": 10}

    log.start()
    wait_for(lambda: log.counts["written"] == 10)
    assert log.record(impression(11))
    log.close()
    assert not log.record(impression(12))
    assert log.counts == {"written": 11, "dropped_full": 1, "dropped_error": 0, "dropped_closed": 1, "queued": 0}


def test_close_without_start_counts_what_was_queued_as_dropped(tmp_path):
    log = ImpressionLog(tmp_path / "log")
    log.record(impression(1))
    log.close()
    assert log.counts["dropped_closed"] == 1 and log.counts["queued"] == 0
    assert not tmp_path.joinpath("log").exists()


def test_record_does_not_wait_for_a_stuck_writer(tmp_path, monkeypatch):
    stuck, release = threading.Event(), threading.Event()
    write_all = impressions._write_all

    def stuck_write(fd: int, data: bytes):  # a disk that does not answer, as a hung network mount does
        stuck.set()
        release.wait(10)
        return write_all(fd, data)

    monkeypatch.setattr(impressions, "_write_all", stuck_write)
    metrics = Metrics()
    log = ImpressionLog(tmp_path, queue_size=100, metrics=metrics).start()
    log.record(impression(0))
    assert stuck.wait(5)
    slowest, accepted = 0.0, 0
    for number in range(1, 201):
        began = time.perf_counter()
        accepted += log.record(impression(number))
        slowest = max(slowest, time.perf_counter() - began)
    assert slowest < 0.05
    assert accepted == 100 and log.counts["dropped_full"] == 100
    text = generate_latest(metrics.registry).decode()  # the drops show while the writer is still stuck
    assert 'shoprank_impression_log_records_total{outcome="dropped_full"} 100.0' in text
    assert "shoprank_impression_log_queued 101.0" in text

    began = time.perf_counter()
    log.close(timeout_s=0.2)
    assert time.perf_counter() - began < 1.0  # a stuck writer does not hold up shutdown either
    release.set()
    wait_for(lambda: not writer_alive(log))
    assert log.counts["written"] == 101 and log.counts["queued"] == 0


def test_a_record_that_cannot_be_encoded_is_dropped_and_the_rest_written(tmp_path):
    log = ImpressionLog(tmp_path).start()
    log.record(impression(1))
    log.record(Interaction("request-2", float("nan"), "event-2", "", "product-1", "click", 0))
    log.record("not a record")  # type: ignore[arg-type]
    log.record(impression(3))
    log.close()
    assert log.counts["written"] == 2 and log.counts["dropped_error"] == 2
    assert [record["request_id"] for record in read_log(tmp_path)] == ["request-1", "request-3"]


FULL_DISK = """
    import json, resource, signal, sys, threading, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    from tests.unit.orchestrator.test_impressions import impression, wait_for, writer_alive
    from orchestrator.experiments.impressions import ImpressionLog, log_files, read_log

    directory = Path(sys.argv[1])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing us
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    log = ImpressionLog(directory, rotate_bytes=2**20).start()
    refused = 0
    for number in range(100):
        refused += not log.record(impression(number))
    wait_for(lambda: log.counts["queued"] == 0)
    full = log.counts
    size = sum(path.stat().st_size for path in log_files(directory))
    alive = writer_alive(log)
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # space returns
    for number in range(100, 110):
        refused += not log.record(impression(number))
    log.close()
    print(json.dumps({"refused": refused, "full": full, "size": size, "alive": alive, "after": log.counts,
                      "ids": [record["request_id"] for record in read_log(directory)]}))
"""


def test_a_full_disk_drops_records_and_the_log_recovers_when_space_returns(tmp_path):
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(FULL_DISK), str(tmp_path), str(ROOT)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "cannot write" in done.stderr and "File too large" in done.stderr  # logged, once
    assert done.stderr.count("cannot write") == 1
    result = json.loads(done.stdout)
    assert result["refused"] == 0 and result["alive"]
    assert result["size"] <= 4096
    full = result["full"]
    assert full["written"] > 0 and full["dropped_error"] > 0 and full["written"] + full["dropped_error"] == 100
    assert result["after"]["written"] == full["written"] + 10
    assert result["ids"] == [f"request-{n}" for n in range(full["written"])] + [
        f"request-{n}" for n in range(100, 110)]


def test_start_says_which_directory_cannot_be_created(tmp_path):
    tmp_path.joinpath("file").write_text("")
    with pytest.raises(ConfigError, match="impression log directory .*file/log cannot be created"):
        ImpressionLog(tmp_path / "file" / "log").start()


def test_settings_out_of_range_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="queue_size is 0"):
        ImpressionLog(tmp_path, queue_size=0)
    with pytest.raises(ConfigError, match="rotate_s is 0"):
        ImpressionLog(tmp_path, rotate_s=0)


def test_read_log_skips_a_cut_last_line_and_names_a_broken_one(tmp_path):
    whole = impressions.encode(impression(1))
    cut = tmp_path / "impressions-20261207T080000-7-000000.jsonl"
    cut.write_bytes(whole + whole[:40])
    assert [record["request_id"] for record in read_log(tmp_path)] == ["request-1"]

    cut.write_bytes(whole[:40] + b"\n" + whole)
    with pytest.raises(DataError, match="000000.jsonl, line 1: not JSON"):
        list(read_log(tmp_path))
    with pytest.raises(DataError, match="does not exist"):
        list(read_log(tmp_path / "missing"))


def test_the_metrics_count_each_outcome_and_the_queue(tmp_path):
    metrics = Metrics()
    log = ImpressionLog(tmp_path, queue_size=2, metrics=metrics)
    log.record(impression(1))
    log.record(impression(2))
    log.record(impression(3))
    assert "shoprank_impression_log_queued 2.0" in generate_latest(metrics.registry).decode()
    log.start()
    wait_for(lambda: log.counts["written"] == 2)
    log.record(Interaction("request-4", float("inf"), "event-4", "", "product-1", "click", 0))
    log.close()
    log.record(impression(5))
    text = generate_latest(metrics.registry).decode()
    for outcome in ("written", "dropped_full", "dropped_error", "dropped_closed"):
        expected = 2.0 if outcome == "written" else 1.0
        assert f'shoprank_impression_log_records_total{{outcome="{outcome}"}} {expected}' in text
    assert "shoprank_impression_log_queued 0.0" in text
