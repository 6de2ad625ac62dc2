"""Pipeline.search and Pipeline.feedback in an experiment, on a tiny in-memory index with stand-ins for Triton (as in
test_pipeline_search.py): an interleaved search ranks one retrieval twice and answers with the team draft of both
rankings, an A/B search is ranked by its arm, feedback credits the arm that placed the product, and every answer
and joined event reaches the impression log."""

from __future__ import annotations

import asyncio
import json
import random

import numpy as np
import pytest

import orchestrator.search.order as order_stage
import orchestrator.search.rerank as rerank_stage
from core.catalog import Product
from core.settings import Settings
from orchestrator.catalog.memory import MemoryCatalog
from orchestrator.experiments.arms import parse_arm
from orchestrator.experiments.controller import ExperimentController
from orchestrator.experiments.impressions import ImpressionLog, read_log
from orchestrator.experiments.interleave import CONTROL, TREATMENT, team_draft
from orchestrator.personalization.events import Event
from orchestrator.personalization.personalizer import user_key
from orchestrator.rollout.controller import RolloutController
from orchestrator.rollout.versions import VersionLoader
from orchestrator.search import CrossEncoder, Pipeline, SearchQuery
from tests.unit.orchestrator.test_pipeline_search import StuckTriton
from tests.unit.orchestrator.test_rollout_controller import CONFIG, FakeTriton

TOOLS = [Product(f"t{n}", f"Drill {name}")
         for n, name in enumerate(["Bit", "Press", "Driver", "Chuck", "Stand", "Case"])]
QUERY = "drill press"
LOG_KEY = b"test key"


class Encoder:
    """Every query embeds like the first product; records the texts it encodes. No multilingual encoder."""

    multilingual_tokenizer = None

    def __init__(self, embedding: np.ndarray) -> None:
        self.embedding = embedding
        self.texts: list[str] = []

    async def encode(self, text: str, version: str) -> np.ndarray:
        self.texts.append(text)
        return self.embedding


class Triton:
    """Scores each pair by its position in the request, so the cross-encoder reverses the fused order it is sent."""

    def __init__(self) -> None:
        self.queries: list[str] = []
        self.versions: list[str] = []

    async def infer(self, spec, feeds, version=""):
        self.queries.append(feeds["query"])
        self.versions.append(version)
        return {"score": np.arange(len(feeds["texts"]), dtype=np.float32).reshape(-1, 1)}


def tokenizer(query, texts):
    return {"query": query, "texts": texts}


class CountingCatalog(MemoryCatalog):
    """The in-memory catalog, counting the retrievers' searches."""

    def __init__(self, index) -> None:
        super().__init__(index)
        self.calls: list[str] = []

    async def lexical(self, text, k, filters=(), in_stock=False):
        self.calls.append("lexical")
        return await super().lexical(text, k, filters, in_stock)

    async def nearest(self, field, vector, k, filters=(), in_stock=False):
        self.calls.append(f"nearest {field}")
        return await super().nearest(field, vector, k, filters, in_stock)


class Parts:
    """A pipeline over TOOLS with an experiment controller, and the stand-ins it calls."""

    def __init__(self, index, impressions: ImpressionLog | None = None) -> None:
        self.catalog = CountingCatalog(index)
        self.encoder = Encoder(index.dense.embeddings[0])
        self.triton = Triton()
        self.experiments = ExperimentController(None)
        self.cross_encoder = CrossEncoder(self.triton, tokenizer, timeout_s=5.0, max_in_flight=2)
        self.pipeline = Pipeline(Settings(), self.catalog, self.encoder, {},  # type: ignore[arg-type]
                                 cross_encoder=self.cross_encoder, experiments=self.experiments,
                                 impressions=impressions, log_key=LOG_KEY)

    def search(self, query: SearchQuery):
        return asyncio.run(self.pipeline.search(query))

    def ranking(self, arm: str, query: SearchQuery) -> list[tuple[str, float]]:
        """How `arm` alone ranks the query (searched outside any experiment, not counted by the stand-ins)."""
        experiments, self.pipeline.experiments = self.pipeline.experiments, None
        calls, texts, queries = list(self.catalog.calls), list(self.encoder.texts), list(self.triton.queries)
        try:
            result = self.search(parse_arm(arm).apply(query))
        finally:
            self.pipeline.experiments = experiments
            self.catalog.calls[:], self.encoder.texts[:], self.triton.queries[:] = calls, texts, queries
        return [(item.product_id, item.score) for item in result.items]

    def wins_losses_ties(self, name: str = "exp") -> tuple[int, int, int]:
        figures = self.experiments.status(name)[0]["interleaving"]
        return figures["wins"], figures["losses"], figures["ties"]


@pytest.fixture
def parts(monkeypatch, make_index):
    monkeypatch.setattr(rerank_stage, "match_features", lambda query, texts: {})
    return Parts(make_index(TOOLS))


def ids(ranking) -> list[str]:
    return [product for product, _ in ranking]


def click(result, position: int, event_id: str = "e1", kind: str = "click", user: str = "u1") -> Event:
    """A feedback event on the product `result` showed at `position` (1-based), naming its request."""
    return Event(event_id, user, result.items[position - 1].product_id, kind, 1.0, request_id=result.request_id,
                 position=position)


def position_of(result, arm: str) -> int:
    return next(number for number, item in enumerate(result.items, 1) if item.arm == arm)


# ---------------------------------------------------------------------------------------------------- interleave

def test_the_two_arms_rank_the_tiny_catalog_differently(parts):
    query = SearchQuery(QUERY, top_k=6)
    default, fused = ids(parts.ranking("default", query)), ids(parts.ranking("fused", query))
    assert sorted(default) == sorted(fused) == sorted(product.product_id for product in TOOLS)
    assert default[0] != fused[0] and default != fused  # the stand-in cross-encoder reverses the fused order
    assert default == fused[::-1]


def test_an_interleaved_answer_is_the_team_draft_of_both_arms_rankings(parts):
    query = SearchQuery(QUERY, top_k=6)
    control, treatment = parts.ranking("default", query), parts.ranking("fused", query)
    parts.experiments.start("exp", "default", "fused", "interleave", 1.0)

    result = parts.search(query)

    assert result.experiment == "exp" and result.request_id
    products = [item.product_id for item in result.items]
    assert len(products) == len(set(products)) == 6
    assert {item.arm for item in result.items} == {CONTROL, TREATMENT}
    drawn = team_draft(ids(control), ids(treatment), 6, random.Random(result.request_id))
    assert [(item.product_id, item.arm) for item in result.items] == drawn
    scores = {CONTROL: dict(control), TREATMENT: dict(treatment)}
    for item in result.items:  # each item as the arm that placed it scored it
        assert item.score == pytest.approx(scores[item.arm][item.product_id])
    assert parts.experiments.get("exp").shown == 1
    assert not result.degraded


def test_when_one_arm_fails_the_other_arms_work_ends_with_the_search(parts, monkeypatch):
    triton = StuckTriton()  # the control arm's cross-encoder call stays in flight
    calls = triton.calls

    async def broken_order(self, context):
        while not calls:  # the treatment arm fails while the control's call is in flight
            await asyncio.sleep(0.001)
        raise RuntimeError("a bug in one arm")

    monkeypatch.setattr(parts.triton, "infer", triton.infer)
    monkeypatch.setattr(order_stage.Order, "run", broken_order)
    parts.experiments.start("exp", "default", "fused", "interleave", 1.0)

    async def scenario():
        with pytest.raises(RuntimeError, match="a bug in one arm"):
            await parts.pipeline.search(SearchQuery(QUERY, top_k=6))
        return list(calls), parts.cross_encoder.in_flight

    assert asyncio.run(scenario()) == (["started", "cancelled"], 0)


def test_both_arms_are_ranked_from_one_retrieval(parts):
    parts.experiments.start("exp", "default", "fused", "interleave", 1.0)
    for number in range(3):
        parts.search(SearchQuery(QUERY, user_id=f"user-{number}", top_k=6))
    # Once per search: one BM25 search, one ANN search, one query embedding; the default arm's cross-encoder call
    # (the fused arm is not reranked).
    assert parts.catalog.calls == ["lexical", "nearest dense"] * 3
    assert parts.encoder.texts == [QUERY] * 3
    assert parts.triton.queries == [QUERY] * 3


def test_both_arms_rerank_the_same_candidates_each_with_its_own_weights(parts):
    query = SearchQuery(QUERY, top_k=6)
    bm25, dense = parts.ranking("weights=bm25:1", query), parts.ranking("weights=dense:1", query)
    assert ids(bm25) != ids(dense)
    parts.experiments.start("exp", "weights=bm25:1", "weights=dense:1", "interleave", 1.0)
    result = parts.search(query)
    assert [(item.product_id, item.arm) for item in result.items] == team_draft(
        ids(bm25), ids(dense), 6, random.Random(result.request_id))
    assert parts.catalog.calls == ["lexical", "nearest dense"] and parts.triton.queries == []


def test_under_load_the_arms_are_not_judged_one_with_the_cross_encoder_and_one_without(parts):
    cross_encoder = parts.cross_encoder
    cross_encoder.in_flight = cross_encoder.max_in_flight - 1  # another query holds all slots but one
    parts.experiments.start("exp", "default", "weights=reranker:1+bm25:1", "interleave", 1.0)
    result = parts.search(SearchQuery(QUERY, top_k=6, explain=True))
    # One arm got the cross-encoder's last slot and the other was refused: the arms were not compared as they are,
    # so the control's ranking answers, left out of the experiment.
    assert "reranker_busy" in result.degraded_reason
    assert result.experiment == "" and {item.arm for item in result.items} == {""}
    assert parts.experiments.get("exp").shown == 0
    cross_encoder.in_flight = 0  # both arms get a slot: interleaved and counted
    result = parts.search(SearchQuery(QUERY, top_k=6, explain=True))
    assert not result.degraded and {item.arm for item in result.items} == {CONTROL, TREATMENT}
    assert parts.experiments.get("exp").shown == 1


def test_feedback_credits_the_team_that_placed_the_clicked_product(parts):
    parts.experiments.start("exp", "default", "fused", "interleave", 1.0)
    result = parts.search(SearchQuery(QUERY, user_id="u1", top_k=6))
    treatment_at, control_at = position_of(result, TREATMENT), position_of(result, CONTROL)

    parts.pipeline.feedback([click(result, treatment_at)], [True])
    assert parts.wins_losses_ties() == (1, 0, 0)
    parts.pipeline.feedback([click(result, treatment_at, "e1")], [False])  # a duplicate: counted the first time
    parts.pipeline.feedback([click(result, control_at, "e2")], [False])
    assert parts.wins_losses_ties() == (1, 0, 0)
    parts.pipeline.feedback([click(result, control_at, "e3")], [True])  # one click for each team: a tie
    assert parts.wins_losses_ties() == (0, 0, 1)
    experiment = parts.experiments.get("exp")
    assert experiment.feedback_joined == 2 and experiment.feedback_unjoined == 0


def test_feedback_without_a_request_id_is_not_joined(parts):
    parts.experiments.start("exp", "default", "fused", "interleave", 1.0)
    result = parts.search(SearchQuery(QUERY, top_k=6))
    anonymous = Event("e1", "u1", result.items[0].product_id, "click", 1.0, position=1)
    parts.pipeline.feedback([anonymous], [True])
    experiment = parts.experiments.get("exp")
    assert parts.wins_losses_ties() == (0, 0, 0)
    assert experiment.feedback_joined == experiment.feedback_unjoined == 0


def test_a_batch_of_feedback_joins_each_new_event_to_its_own_answer(parts):
    parts.experiments.start("exp", "default", "fused", "interleave", 1.0)
    first, second = parts.search(SearchQuery(QUERY, top_k=6)), parts.search(SearchQuery("drill", top_k=6))
    events = [click(first, position_of(first, TREATMENT), "e1"), click(second, position_of(second, CONTROL), "e2"),
              click(second, position_of(second, TREATMENT), "e3")]
    parts.pipeline.feedback(events, [True, True, False])
    assert parts.wins_losses_ties() == (1, 1, 0)


def test_a_search_outside_the_share_is_answered_as_usual(parts):
    query = SearchQuery(QUERY, top_k=6)
    default = ids(parts.ranking("default", query))
    parts.experiments.start("exp", "default", "fused", "interleave", 0.5)
    users = [f"user-{number}" for number in range(40)]
    outside = [user for user in users if parts.experiments.assign(user, "") is None]
    inside = [user for user in users if parts.experiments.assign(user, "") is not None]
    assert outside and inside
    left_out = parts.search(SearchQuery(QUERY, user_id=outside[0], top_k=6))
    taken = parts.search(SearchQuery(QUERY, user_id=inside[0], top_k=6))
    assert left_out.experiment == "" and {item.arm for item in left_out.items} == {""}
    assert [item.product_id for item in left_out.items] == default
    assert taken.experiment == "exp" and {item.arm for item in taken.items} == {CONTROL, TREATMENT}
    assert parts.experiments.get("exp").shown == 1


# ------------------------------------------------------------------------------------------------------------- A/B

def test_an_ab_search_is_ranked_by_its_users_arm_alone(parts):
    query = SearchQuery(QUERY, top_k=6)
    rankings = {CONTROL: ids(parts.ranking("default", query)), TREATMENT: ids(parts.ranking("fused", query))}
    parts.experiments.start("ab", "default", "fused", "ab", 1.0)
    seen = set()
    for number in range(12):
        user = f"user-{number}"
        arm = parts.experiments.assign(user, "").arm
        result = parts.search(SearchQuery(QUERY, user_id=user, top_k=6))
        assert result.experiment == "ab" and {item.arm for item in result.items} == {arm}
        assert [item.product_id for item in result.items] == rankings[arm]
        seen.add(arm)
    assert seen == {CONTROL, TREATMENT}
    arms = parts.experiments.status("ab")[0]["arms"]
    assert arms[CONTROL]["searches"] + arms[TREATMENT]["searches"] == 12
    assert parts.catalog.calls == ["lexical", "nearest dense"] * 12  # one ranking per search


def test_ab_feedback_counts_toward_the_arm_that_answered(parts):
    parts.experiments.start("ab", "default", "fused", "ab", 1.0)
    arm = parts.experiments.assign("u1", "").arm
    result = parts.search(SearchQuery(QUERY, user_id="u1", top_k=6))
    parts.pipeline.feedback([click(result, 1, "e1"), click(result, 2, "e2", kind="purchase")], [True, True])
    figures = parts.experiments.status("ab")[0]["arms"][arm]
    assert figures["searches"] == 1 and figures["clicks_per_search"] == 2.0 and figures["purchases_per_search"] == 1.0


# ------------------------------------------------------------------------------------------- without experiments

def test_without_an_experiment_items_carry_no_arm_and_each_search_its_own_request_id(parts):
    results = [parts.search(SearchQuery(QUERY, top_k=6)) for _ in range(5)]
    parts.pipeline.experiments = None
    results += [parts.search(SearchQuery(QUERY, user_id="u1", top_k=6)) for _ in range(5)]
    for result in results:
        assert result.experiment == "" and {item.arm for item in result.items} == {""}
    assert all(result.request_id for result in results)
    assert len({result.request_id for result in results}) == len(results)
    parts.pipeline.feedback([click(results[-1], 1)], [True])  # nothing to join: no error


# -------------------------------------------------------------------------------------------- the impression log

def test_every_answer_and_each_joined_event_reach_the_impression_log(monkeypatch, make_index, tmp_path):
    monkeypatch.setattr(rerank_stage, "match_features", lambda query, texts: {})
    log = ImpressionLog(tmp_path / "impressions").start()
    parts = Parts(make_index(TOOLS), impressions=log)
    parts.experiments.start("exp", "default", "fused", "interleave", 1.0)
    results = [parts.search(SearchQuery(QUERY, user_id="u1", top_k=6)), parts.search(SearchQuery("drill", top_k=4)),
               parts.search(SearchQuery("tiolet", user_id="u2", top_k=3))]
    clicked = results[0]
    at = position_of(clicked, TREATMENT)
    stray = Event("e9", "u1", "t1", "click", 2.0, request_id="not-ours", position=1)
    parts.pipeline.feedback([click(clicked, at, "e1"), click(clicked, at, "e1"), stray], [True, False, True])
    log.close()

    records = list(read_log(tmp_path / "impressions"))
    impressions = [record for record in records if record["kind"] == "impression"]
    interactions = [record for record in records if record["kind"] == "interaction"]
    assert [record["request_id"] for record in impressions] == [result.request_id for result in results]
    for record, result in zip(impressions, results):
        assert record["products"] == [item.product_id for item in result.items]
        assert record["arms"] == [item.arm for item in result.items] and set(record["arms"]) <= {CONTROL, TREATMENT}
        assert record["experiment"] == "exp" and record["corrected_query"] == result.corrected_query
        assert record["model_versions"] == result.model_versions and record["shop"] == result.shop
    assert [record["query"] for record in impressions] == [QUERY, "drill", "tiolet"]
    assert [record["user"] for record in impressions] == [user_key("u1", LOG_KEY), "", user_key("u2", LOG_KEY)]
    assert "u1" not in {record["user"] for record in impressions}  # users are logged as keyed hashes
    joined, unjoined = interactions  # the duplicate was logged the first time only
    assert joined["request_id"] == clicked.request_id and joined["joined"] is True
    assert (joined["arm"], joined["experiment"], joined["position"]) == (TREATMENT, "exp", at)
    assert joined["product_id"] == clicked.items[at - 1].product_id and joined["event_id"] == "e1"
    assert joined["user"] == user_key("u1", LOG_KEY) and joined["type"] == "click"
    assert unjoined["request_id"] == "not-ours" and unjoined["joined"] is False and unjoined["arm"] == ""
    assert log.counts["written"] == 5 and log.counts["dropped_error"] == 0


def test_answers_outside_experiments_are_logged_with_empty_arms(monkeypatch, make_index, tmp_path):
    monkeypatch.setattr(rerank_stage, "match_features", lambda query, texts: {})
    log = ImpressionLog(tmp_path / "impressions").start()
    parts = Parts(make_index(TOOLS), impressions=log)
    parts.pipeline.experiments = None
    result = parts.search(SearchQuery(QUERY, top_k=2))
    parts.pipeline.feedback([click(result, 2)], [True])
    log.close()
    impression, interaction = read_log(tmp_path / "impressions")
    assert impression["arms"] == ["", ""] and impression["experiment"] == "" and impression["degraded"] is False
    assert interaction["position"] == 2 and interaction["joined"] is False and interaction["experiment"] == ""


# ------------------------------------------------------------------------------------------ an interleaved rollout

def test_an_interleaved_rollout_ranks_each_arm_with_its_own_reranker_version(monkeypatch, make_index, tmp_path):
    monkeypatch.setattr(rerank_stage, "match_features", lambda query, texts: {})
    repository = tmp_path / "repo"
    for version, weights in (("1", {"reranker": 1.0}), ("2", {"reranker": -1.0})):  # 2 reverses 1's order
        (repository / "reranker" / version).mkdir(parents=True)
        (repository / "reranker" / version / "combination.json").write_text(json.dumps({"latin": weights}))
    (repository / "reranker" / "config.pbtxt").write_text(CONFIG)
    (tmp_path / "rollout.json").write_text(json.dumps({"models": {"reranker": {"stable": "1"}}}))
    settings = Settings(model_repository=repository, rollout_state=tmp_path / "rollout.json")
    parts = Parts(make_index(TOOLS))

    async def scenario():
        loader = VersionLoader(FakeTriton(), repository, load_timeout_s=1.0)  # type: ignore[arg-type]
        rollout = RolloutController(loader, settings, experiments=parts.experiments)
        await rollout.open()
        parts.pipeline = Pipeline(settings, parts.catalog, parts.encoder, {},  # type: ignore[arg-type]
                                  cross_encoder=parts.cross_encoder, rollout=rollout, experiments=parts.experiments)
        stable = await parts.pipeline.search(SearchQuery(QUERY, top_k=6))
        versions_before = list(parts.triton.versions)
        model = await rollout.start("reranker", "2", 100, mode="interleave")
        interleaved = await parts.pipeline.search(SearchQuery(QUERY, top_k=6))
        await rollout.close()
        return stable, versions_before, model.experiment, interleaved

    stable, versions_before, name, interleaved = asyncio.run(scenario())
    assert stable.experiment == "" and versions_before == ["1"] and stable.model_versions["reranker"] == "1"
    assert interleaved.experiment == name and name.startswith("rollout-reranker-2-")
    assert sorted(parts.triton.versions[1:]) == ["1", "2"]  # one cross-encoder call per arm, each its version
    assert interleaved.model_versions["reranker"] == "1" and interleaved.model_versions["reranker.treatment"] == "2"
    assert {item.arm for item in interleaved.items} == {CONTROL, TREATMENT} and not interleaved.degraded
    control = [item.product_id for item in stable.items]
    assert [(item.product_id, item.arm) for item in interleaved.items] == team_draft(
        control, control[::-1], 6, random.Random(interleaved.request_id))
