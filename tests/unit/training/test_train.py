import numpy as np
import pytest
import torch

from core.catalog import Product
from core.query_lists import (
    QueryList,
    build_lists,
    correct_queries,
    mean_ndcg_over_queries,
    ndcg_per_query,
    paired_report,
)
from training.train import PAIR_MARGIN, listwise_loss, pairwise_loss, pointwise_loss


def test_listwise_loss_prefers_scores_ordered_like_gains():
    gains = torch.tensor([2.0, 0.0, 1.0, 0.0, 2.0])
    sizes = [3, 2]
    good = listwise_loss(torch.tensor([3.0, -3.0, 1.0, -3.0, 3.0]), gains, sizes)
    bad = listwise_loss(torch.tensor([-3.0, 3.0, 1.0, 3.0, -3.0]), gains, sizes)
    assert good < bad


def test_listwise_loss_is_per_query():
    """Shifting one query's scores by a constant changes nothing: softmax is per query."""
    gains = torch.tensor([2.0, 0.0, 1.0, 0.0])
    scores = torch.tensor([1.0, 0.0, 0.5, 0.2])
    shifted = scores + torch.tensor([10.0, 10.0, 0.0, 0.0])
    assert listwise_loss(scores, gains, [2, 2]) == pytest.approx(listwise_loss(shifted, gains, [2, 2]).item())


def test_pointwise_loss_is_mse_on_gain():
    assert pointwise_loss(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 0.0]), [2]).item() == pytest.approx(2.0)


def test_pairwise_loss_prefers_scores_ordered_like_gains_and_ignores_close_gains():
    gains = torch.tensor([2.0, 0.0, 1.0])
    good = pairwise_loss(torch.tensor([3.0, -3.0, 0.0]), gains, [3])
    bad = pairwise_loss(torch.tensor([-3.0, 3.0, 0.0]), gains, [3])
    assert good < bad
    close = torch.tensor([1.0, 1.0 + PAIR_MARGIN / 2])  # raters' averages too close to trust
    assert pairwise_loss(torch.tensor([5.0, -5.0]), close, [2]).item() == 0.0
    # Pairs never cross queries: the second query's products are not compared with the first's.
    assert pairwise_loss(torch.tensor([0.0, 9.0]), torch.tensor([2.0, 0.0]), [1, 1]).item() == 0.0


def test_pairwise_loss_is_shift_invariant_per_query():
    gains = torch.tensor([2.0, 0.0, 1.0, 0.0])
    scores = torch.tensor([1.0, 0.0, 0.5, 0.2])
    shifted = scores + torch.tensor([10.0, 10.0, -4.0, -4.0])
    assert pairwise_loss(scores, gains, [2, 2]).item() == pytest.approx(pairwise_loss(shifted, gains, [2, 2]).item())


def test_paired_report_pairs_queries_and_skips_those_without_a_positive_gain():
    lists = [QueryList(f"q{n}", ("a", "b"), ("A", "B"), np.array([1.0, 0.0], dtype=np.float32)) for n in range(30)]
    lists.append(QueryList("nothing relevant", ("a", "b"), ("A", "B"), np.array([0.0, 0.0], dtype=np.float32)))
    right = [np.array([1.0, 0.0])] * 31
    wrong = [np.array([0.0, 1.0])] * 31
    assert ndcg_per_query(lists, right)[-1] is None
    report = paired_report(lists, {"model": right, "baseline": wrong, "same": right}, "model")
    assert report["queries"] == 30
    assert report["ndcg@10"]["model"] == 1.0 and report["ndcg@10"]["baseline"] < 1.0
    better = report["model - baseline"]
    assert better["excludes_zero"] and better["ci95"][0] > 0
    assert report["model - same"] == {"difference": 0.0, "ci95": [0.0, 0.0], "excludes_zero": False}


def test_build_lists_keeps_catalog_products_and_hides_file_order():
    products = [Product(str(n), f"title {n}") for n in range(20)]
    judgments = {"q": {str(n): float(n % 3) for n in range(20)}, "gone": {"missing": 1.0}}
    lists = build_lists(products, judgments, seed=0)
    assert [item.query for item in lists] == ["q"]
    item = lists[0]
    assert sorted(item.product_ids) == sorted(str(n) for n in range(20))
    assert list(item.product_ids) != sorted(item.product_ids)
    assert [float(n) % 3 for n in map(int, item.product_ids)] == item.gains.tolist()
    assert build_lists(products, judgments, seed=0)[0].product_ids == item.product_ids


def test_mean_ndcg_over_queries_of_perfect_and_reversed_orders():
    item = QueryList("q", ("a", "b", "c"), ("A", "B", "C"), np.array([2.0, 1.0, 0.0], dtype=np.float32))
    assert mean_ndcg_over_queries([item], [np.array([3.0, 2.0, 1.0])]) == pytest.approx(1.0)
    assert mean_ndcg_over_queries([item], [np.array([1.0, 2.0, 3.0])]) < 0.8


def test_build_lists_adds_sampled_negatives_at_gain_zero_without_changing_judged_gains():
    products = [Product(str(n), f"title {n}") for n in range(30)]
    judgments = {"q": {"0": 2.0, "1": 1.0}, "r": {"2": 1.5}}
    mined = {"q": [str(n) for n in range(10, 20)] + ["not in catalog"], "r": []}
    lists = {item.query: item for item in build_lists(products, judgments, seed=0, mined=mined, negatives_per_query=3)}
    gains = dict(zip(lists["q"].product_ids, lists["q"].gains.tolist()))
    assert gains["0"] == 2.0 and gains["1"] == 1.0
    extra = set(gains) - {"0", "1"}
    assert len(extra) <= 3 and extra <= {str(n) for n in range(10, 20)} and all(gains[pid] == 0.0 for pid in extra)
    assert lists["r"].product_ids == ("2",)
    again = {item.query: item for item in build_lists(products, judgments, seed=0, mined=mined, negatives_per_query=3)}
    assert again["q"].product_ids == lists["q"].product_ids


def test_build_lists_without_negatives_is_unchanged_by_a_mined_file():
    products = [Product(str(n), f"title {n}") for n in range(10)]
    judgments = {"q": {str(n): 1.0 for n in range(5)}}
    plain = build_lists(products, judgments, seed=0)
    with_file = build_lists(products, judgments, seed=0, mined={"q": ["7", "8"]}, negatives_per_query=0)
    assert plain[0].product_ids == with_file[0].product_ids


def test_correct_queries_corrects_as_the_service_does_and_keeps_the_rest():
    products = [Product("1", "Glacier Bay Toilet Tank Lid"), Product("2", "Ceiling Fan"), Product("3", "Hammer")]
    lists = {"train": build_lists(products, {"tiolet lid": {"1": 2.0, "3": 0.0}}, seed=0),
             "dev": build_lists(products, {"cieling fan": {"2": 1.0}, "hammer": {"3": 2.0}}, seed=0)}
    corrected = correct_queries(lists, products)
    assert [item.query for item in corrected["train"]] == ["toilet lid"]
    assert [item.query for item in corrected["dev"]] == ["ceiling fan", "hammer"]
    for name in lists:
        for before, after in zip(lists[name], corrected[name]):
            assert (after.product_ids, after.texts, after.gains.tolist()) == (
                before.product_ids, before.texts, before.gains.tolist())
