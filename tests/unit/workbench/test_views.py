"""What the pages show of an answer: score parts as diverging bars, moves, overlap, nDCG@10 where judged."""

import math

import pytest

from core._proto.shoprank.v1 import admin_pb2, ranking_pb2
from core.catalog import Product
from core.metrics import ndcg_at_k
from workbench import views


def item(product_id: str, *parts: tuple[str, float], raw: float = 1.0) -> ranking_pb2.Item:
    components = [ranking_pb2.ScoreComponent(name=name, raw=raw, rank=1, contribution=value) for name, value in parts]
    return ranking_pb2.Item(product_id=product_id, title=product_id, score=sum(v for _, v in parts),
                            components=components)


def answer(*items: ranking_pb2.Item, **fields) -> ranking_pb2.SearchResponse:
    return ranking_pb2.SearchResponse(items=list(items), **fields)


@pytest.mark.parametrize("name, group", [
    ("bm25", "relevance"), ("reranker", "relevance"), ("relevance:relevance_rank", "relevance"),
    ("preference:brand_affinity", "personal"), ("popularity:popularity", "popularity"), ("blend:bias", "intercept")])
def test_each_component_has_its_group(name, group):
    assert views.group_of(name) == group


def test_a_bar_draws_adding_parts_right_of_zero_and_subtracting_parts_left_on_the_answer_s_scale():
    response = answer(item("A", ("relevance:relevance", 0.06), ("preference:category_affinity", -0.04),
                           ("popularity:popularity", 0.02), ("blend:bias", -6.3)),
                      item("B", ("relevance:relevance", 0.03), ("preference:category_affinity", -0.01)))
    negative, positive = views.scale(response)
    assert (negative, positive) == pytest.approx((0.04, 0.08))  # the intercept is not drawn
    colors = views.legend([response])
    bar = views.answer_view(response, {}, {}, colors).items[0].bar
    assert bar.axis == pytest.approx(100 * 0.04 / 0.12, abs=1e-3)
    by_name = {segment.name: segment for segment in bar.segments}
    assert set(by_name) == {"relevance:relevance", "preference:category_affinity", "popularity:popularity"}
    relevance, affinity, popularity = (by_name[name] for name in ("relevance:relevance", "preference:category_affinity",
                                                                   "popularity:popularity"))
    assert relevance.left == pytest.approx(bar.axis) and relevance.width == pytest.approx(50.0, abs=1e-3)
    assert popularity.left == pytest.approx(relevance.left + relevance.width, abs=1e-3)
    assert affinity.left == pytest.approx(0, abs=1e-3)
    assert affinity.left + affinity.width == pytest.approx(bar.axis, abs=1e-3)
    assert bar.label.startswith("score ") and "preference:category_affinity -0.040" in bar.label
    assert {segment.color for segment in bar.segments} <= set(colors.values())


def test_parts_that_add_nothing_draw_nothing_and_are_not_in_the_legend():
    response = answer(item("A", ("dense", 8.0), ("bm25", 0.0), ("intent", 4.0)))
    view = views.answer_view(response, {}, {}, views.legend([response]))
    assert [segment.name for segment in view.items[0].bar.segments] == ["dense", "intent"]
    assert [part.name for part in view.items[0].parts] == ["dense", "bm25", "intent"]  # the table lists every part
    assert list(views.legend([response])) == ["dense", "intent"]


def test_colours_are_one_per_name_across_both_sides_and_grouped_in_the_legend():
    left = answer(item("A", ("reranker", 1.0), ("preference:pref_cosine", 0.5)))
    right = answer(item("A", ("bm25", 1.0), ("popularity:popularity", 0.1), ("reranker", 2.0)))
    colors = views.legend([left, right])
    assert len(set(colors.values())) == len(colors) == 4
    assert views.legend_groups(colors) == [("Relevance", [("reranker", colors["reranker"]), ("bm25", colors["bm25"])]),
                                           ("Personal", [("preference:pref_cosine", colors["preference:pref_cosine"])]),
                                           ("Popularity", [("popularity:popularity", colors["popularity:popularity"])])]


def test_an_answer_view_carries_details_judgments_versions_and_the_intercept():
    response = answer(item("A", ("relevance:relevance", 0.2), ("blend:bias", -6.0)), item("B", ("blend:bias", -6.0)),
                      model_versions={"reranker": "3", "bi_encoder": "1"}, degraded=True,
                      degraded_reason="reranker_busy: ...", personalized=True, shop="demo", request_id="r1")
    products = {"A": Product("A", "a", price=9.5, image_url="http://img/a.png", attributes={"stock": "0"})}
    view = views.answer_view(response, products, {"A": 2.0}, views.legend([response]))
    first, second = view.items
    assert first.details == views.Details(image_url="http://img/a.png", price=9.5, stock=0)
    assert second.details == views.Details()  # not in the catalog the workbench was given
    assert (first.gain, second.gain) == (2.0, None)
    assert view.model_versions == (("bi_encoder", "1"), ("reranker", "3"))
    assert view.intercept == -6.0 and view.degraded and view.ids == ["A", "B"]
    assert view.quality == views.Quality(ndcg=ndcg_at_k(["A", "B"], {"A": 2.0}, 10), judged=1, shown=2)


def test_moves_against_a_reference_ranking():
    moves = views.moves(["C", "A", "B", "E"], ["A", "B", "C", "D"])
    assert [(move.kind, move.places, move.before) for move in moves] == [
        ("up", 2, 3), ("down", 1, 1), ("down", 1, 2), ("new", 0, 0)]
    assert [move.text for move in moves] == ["▲ 2", "▼ 1", "▼ 1", "new"]
    assert moves[0].describe("left ranking") == "up 2 places from 3 in the left ranking"
    assert moves[1].describe("left ranking") == "down 1 place from 1 in the left ranking"
    assert views.moves(["A"], ["A"])[0].describe("x") == "same place as in the x"


def test_the_overlap_of_two_rankings():
    overlap = views.overlap(["A", "B", "C", "D"], ["B", "A", "E"])
    assert (overlap.shared, overlap.size, overlap.only_left, overlap.only_right) == (2, 4, ("C", "D"), ("E",))
    assert overlap.text == "2 of 4 products in both rankings (50%)"


def test_quality_is_the_project_s_ndcg_of_the_top_10_with_how_many_are_judged():
    ids = [f"P{i}" for i in range(12)]
    judged = {"P1": 3.0, "P11": 2.0, "X": 1.0}
    quality = views.quality(ids, judged)
    assert quality.ndcg == pytest.approx(ndcg_at_k(ids[:10], judged, 10))
    assert (quality.judged, quality.shown) == (1, 10)
    assert quality.text.startswith("nDCG@10 0.") and "(1 of 10 judged)" in quality.text
    assert views.quality(ids, {}).text == "nDCG@10: no positive rating yet (0 of 10 judged)"
    assert views.quality(ids, {"P1": 0.0}).ndcg is None


def test_json_has_no_nan_and_moves_keep_their_text():
    response = answer(item("A", ("preference:due_ratio", -0.01), raw=math.nan))
    data = views.as_json(views.answer_view(response, {}, {}, {}, ["B", "A"]))
    assert data["items"][0]["parts"][0]["raw"] is None
    assert data["items"][0]["move"] == {"kind": "up", "places": 1, "before": 2, "text": "▲ 1"}
    assert data["quality"]["text"].startswith("nDCG@10")


def test_experiments_are_listed_running_first_with_their_figures():
    rows = views.experiment_rows([
        admin_pb2.ExperimentStatus(name="old", method="ab", control="default", treatment="fused", running=False,
                                   shown=40, decision="treatment worse"),
        admin_pb2.ExperimentStatus(name="now", method="interleave", control="default", treatment="no-cross-encoder",
                                   running=True, share=0.2, wins=3, losses=1, ties=2, shown=50)])
    assert [row.name for row in rows] == ["now", "old"]
    assert rows[0].detail == "3 won, 1 lost, 2 tied of 50 shown" and rows[0].decision == "undecided"
    assert rows[1].detail == "40 searches" and rows[1].decision == "treatment worse"
