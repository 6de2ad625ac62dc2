"""`make load`'s summary and plot (loadtest/report.py) on small hand-made Locust files, and the runner's Locust
command line (loadtest/run.py). Neither module imports locust, so both run in the test process."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from loadtest import report
from loadtest.run import RunFiles, locust_command

PERCENTILES = "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%"
HISTORY_HEADER = (f"Timestamp,User Count,Type,Name,Requests/s,Failures/s,{PERCENTILES},Total Request Count,"
                  "Total Failure Count,Total Median Response Time,Total Average Response Time,Total Min Response Time,"
                  "Total Max Response Time,Total Average Content Size")
NA = ",".join(["N/A"] * 11)
ZERO = ",".join(["0"] * 11)
# As Locust writes it with --csv-full-history: a row per request name, then the Aggregated row, every second;
# percentiles are N/A before the first call and 0 while the 10 s window is still empty.
HISTORY = f"""{HISTORY_HEADER}
1700000000,2,,Aggregated,0.000000,0.000000,{NA},0,0,0,0.0,0,0,0.0
1700000001,2,,Aggregated,0.000000,0.000000,{ZERO},1,0,20,20.0,20,20,900.0
1700000002,2,grpc,/shoprank.v1.Ranking/Search,4.000000,0.000000,20,22,24,25,30,40,45,50,50,50,50,4,0,20,25.0,10,50,900.0
1700000002,2,,Aggregated,4.000000,0.000000,20,22,24,25,30,40,45,50,50,50,50,4,0,20,25.0,10,50,900.0
1700000003,4,,Aggregated,6.000000,0.500000,30,33,36,38,60,90,110,120,120,120,120,10,1,25,40.0,10,120,900.0
1700000004,4,,Aggregated,8.000000,0.000000,35,40,45,50,80,100,150,200,200,200,200,18,1,30,50.0,10,200,900.0
"""
STATS = f"""Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,\
Max Response Time,Average Content Size,Requests/s,Failures/s,{PERCENTILES}
grpc,/shoprank.v1.Ranking/Search,18,1,30,50.0,10,200,900.0,4.5,0.25,30,40,45,50,80,100,150,200,200,200,200
,Aggregated,18,1,30,50.0,10,200,900.0,4.5,0.25,30,40,45,50,80,100,150,200,200,200,200
"""
# Second 1700000003 had no call; 3 of 18 answers degraded.
TIMELINE = """timestamp,requests,degraded
1700000001,4,0
1700000002,6,1
1700000004,8,2
"""


@pytest.fixture
def files(tmp_path) -> RunFiles:
    files = RunFiles(tmp_path)
    files.history.write_text(HISTORY)
    files.stats.write_text(STATS)
    files.degraded.write_text(TIMELINE)
    return files


def test_history_keeps_the_aggregated_rows_and_reads_na_and_zero_as_nan(files):
    history = report.read_history(files.history)
    assert history.timestamps == [1700000000, 1700000001, 1700000002, 1700000003, 1700000004]
    assert history.users == [2, 2, 2, 4, 4]
    assert history.rps == [0.0, 0.0, 4.0, 6.0, 8.0]
    assert all(math.isnan(values[i]) for values in (history.p50_ms, history.p95_ms, history.p99_ms) for i in (0, 1))
    assert history.p50_ms[2:] == [20, 30, 35]
    assert history.p95_ms[2:] == [40, 90, 100]
    assert history.p99_ms[2:] == [50, 120, 200]


def test_degraded_share_is_over_a_trailing_window_and_fills_missing_seconds():
    timeline = {100: (4, 0), 101: (6, 3), 103: (10, 10)}
    seconds, shares = report.degraded_share(timeline, window_s=2)
    assert seconds == [100, 101, 102, 103]
    assert shares == [0.0, 3 / 10, 3 / 6, 10 / 10]
    seconds, shares = report.degraded_share({100: (0, 0), 105: (2, 1)}, window_s=2)
    assert math.isnan(shares[0]) and math.isnan(shares[1]) and shares[-1] == 0.5
    assert report.degraded_share({}) == ([], [])


def test_summary_has_totals_percentiles_and_degraded_share(files):
    summary = report.summarize(files.stats, files.degraded)
    assert summary == report.Summary(requests=18, failures=1, degraded=3, p50_ms=30, p95_ms=100, p99_ms=200, rps=4.5)
    assert summary.degraded_share == pytest.approx(3 / 18)
    assert summary.line() == "requests=18 failures=1 degraded=3 (16.7%) p50_ms=30 p95_ms=100 p99_ms=200 rps=4.5"


def test_summary_of_a_run_without_requests(tmp_path):
    stats = tmp_path / "stats.csv"
    stats.write_text(STATS.splitlines()[0] + f"\n,Aggregated,0,0,0,0.0,0,0,0.0,0.0,0.0,{NA}\n")
    timeline = tmp_path / "degraded.csv"
    timeline.write_text("timestamp,requests,degraded\n")
    summary = report.summarize(stats, timeline)
    assert (summary.requests, summary.degraded, summary.degraded_share) == (0, 0, 0.0)
    assert "requests=0 failures=0 degraded=0 (0.0%) p50_ms=nan" in summary.line()


def test_plot_writes_a_png(files):
    pytest.importorskip("matplotlib")
    png = report.plot(files.history, files.degraded, files.plot, title="test run")
    assert png == files.plot
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_locust_command_writes_the_files_the_report_reads(tmp_path):
    files = RunFiles(tmp_path)
    command = locust_command("127.0.0.1:50051", 30, files)
    assert command[1:3] == ["-m", "locust"]
    option = lambda name: command[command.index(name) + 1]  # noqa: E731
    assert option("-f") == "loadtest/locustfile.py,loadtest/shapes.py"
    assert {"--headless", "--csv-full-history"} <= set(command)
    assert option("--host") == "127.0.0.1:50051" and option("--run-time") == "30s"
    # Locust names its files <prefix>_stats.csv and <prefix>_stats_history.csv
    prefix = Path(option("--csv"))
    assert (files.stats, files.history) == (Path(f"{prefix}_stats.csv"), Path(f"{prefix}_stats_history.csv"))
    assert Path(option("--html")) == files.html and Path(option("--degraded-csv")) == files.degraded


def test_locust_command_with_steady_users_has_no_shape(tmp_path):
    command = locust_command("127.0.0.1:50051", 200, RunFiles(tmp_path), users=3)
    option = lambda name: command[command.index(name) + 1]  # noqa: E731
    assert option("-f") == "loadtest/locustfile.py"
    assert (option("-u"), option("-r"), option("--run-time")) == ("3", "3", "200s")


def test_no_report_without_locusts_files(tmp_path, capsys):
    from loadtest.run import report as run_report

    assert run_report(RunFiles(tmp_path), "title") is None
    assert "Locust did not write" in capsys.readouterr().err
