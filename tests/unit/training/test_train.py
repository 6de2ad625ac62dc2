import numpy as np
import pytest
import torch

from orchestrator.catalog import Product
from training.train import QueryList, build_lists, listwise_loss, mean_ndcg, pointwise_loss


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


def test_mean_ndcg_of_perfect_and_reversed_orders():
    item = QueryList("q", ("a", "b", "c"), ("A", "B", "C"), np.array([2.0, 1.0, 0.0], dtype=np.float32))
    assert mean_ndcg([item], [np.array([3.0, 2.0, 1.0])]) == pytest.approx(1.0)
    assert mean_ndcg([item], [np.array([1.0, 2.0, 3.0])]) < 0.8
