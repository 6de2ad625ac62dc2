"""Admission control's bookkeeping: which kind a method is, and the bound of each kind."""

from __future__ import annotations

from orchestrator.admission import Gate, kind_of


def test_each_method_has_its_kind():
    assert kind_of("/shoprank.v1.Ranking/Search") == "search"
    for method in ("Feedback", "FeedbackStream", "ForgetUser"):
        assert kind_of(f"/shoprank.v1.Ranking/{method}") == "feedback"
    assert kind_of("/shoprank.v1.Admin/UpsertProducts") == kind_of("/shoprank.v1.Admin/DeleteProducts") == "catalog"
    assert kind_of("/shoprank.v1.Admin/StartRollout") == kind_of("/shoprank.v1.Admin/GetProduct") == "admin"


def test_a_kind_at_its_bound_refuses_and_the_others_still_admit():
    refusals = []
    gate = Gate({"search": 2, "feedback": 1, "catalog": 0, "admin": 1}, on_refusal=refusals.append)
    assert gate.enter("search") and gate.enter("search")
    assert not gate.enter("search")
    assert gate.enter("feedback") and gate.enter("admin")
    assert all(gate.enter("catalog") for _ in range(50))  # 0: no bound
    gate.leave("search")
    assert gate.enter("search")
    assert gate.refused["search"] == 1 and refusals == ["search"]
    assert gate.in_flight == {"search": 2, "feedback": 1, "catalog": 50, "admin": 1}
    assert gate.peak == {"search": 2, "feedback": 1, "catalog": 50, "admin": 1}
    gate.leave("search")
    gate.leave("search")
    assert gate.peak["search"] == 2  # the most at once, kept after they leave
