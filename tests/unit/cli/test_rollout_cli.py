"""cli.rollout: what `shoprank rollout status` prints, and its refusal without a token."""

from __future__ import annotations

import math

import pytest

from cli.main import main
from cli.rollout import format_status
from core._proto.shoprank.v1 import admin_pb2


def test_status_text_names_versions_share_windows_agreement_and_history():
    status = admin_pb2.RolloutStatus(
        model="reranker", stable_version="1", candidate_version="2", mode="shadow", percent=50,
        loaded_versions=["1", "2"],
        windows=[admin_pb2.VersionWindow(version="1", requests=10, errors=1, p99_ms=120.4),
                 admin_pb2.VersionWindow(version="2", requests=0, errors=0, p99_ms=math.nan)],
        shadow_agreement=0.93, shadow_compared=8, shadow_skipped=1,
        history=[admin_pb2.RolloutEvent(time=0.0, action="rollback", version="3", detail="guard: p99 1200 ms")])
    lines = format_status(status).splitlines()
    assert lines[0] == "reranker: stable 1, candidate 2 (shadow 50%); loaded: 1, 2"
    assert "version 1: 10 requests, 1 errors, p99 120 ms" in lines[1] and "p99 -" in lines[2]
    assert "0.930 over 8 rankings, 1 skipped" in lines[3]
    assert lines[-1].endswith("rollback 3: guard: p99 1200 ms")


def test_status_without_a_rollout_says_so():
    status = admin_pb2.RolloutStatus(model="reranker", stable_version="4", loaded_versions=["4"])
    assert format_status(status) == "reranker: stable 4, no rollout in progress; loaded: 4"


def test_rollout_commands_need_the_admin_token(monkeypatch, capsys):
    monkeypatch.delenv("SHOPRANK_ADMIN_TOKEN", raising=False)
    assert main(["rollout", "status"]) == 2
    assert "set SHOPRANK_ADMIN_TOKEN" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["rollout", "start", "reranker", "2", "--canary", "10", "--shadow", "50"]])
def test_canary_and_shadow_exclude_each_other(argv):
    with pytest.raises(SystemExit):
        main(argv)
