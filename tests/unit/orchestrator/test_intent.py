import numpy as np

from orchestrator.intent import IntentModel


def _clusters(rng: np.random.Generator, per_category: int = 20, dim: int = 16):
    """Three categories, each a noisy cluster around its own unit direction."""
    centers = np.eye(dim)[:3]
    embeddings, categories = [], []
    for position, name in enumerate(("Phones", "Phone Accessories", "Tea")):
        points = centers[position] + 0.3 * rng.standard_normal((per_category, dim))
        embeddings.append(points / np.linalg.norm(points, axis=1, keepdims=True))
        categories += [name] * per_category
    return np.vstack(embeddings).astype(np.float32), categories, centers


def test_a_query_near_a_category_gets_its_products_the_highest_intent():
    embeddings, categories, centers = _clusters(np.random.default_rng(0))
    model = IntentModel.fit(embeddings, categories)
    query = centers[0].astype(np.float32)  # "phone"
    assert model.top(query, 1)[0][0] == "Phones"
    feature = model.feature(query, [categories[row] for row in (0, 25, 45)])  # a phone, an accessory, a tea
    assert feature[0] > 0.5 > feature[1] and feature[1] >= 0 and feature[2] < feature[0]
    np.testing.assert_allclose(model.probabilities(query).sum(), 1.0, rtol=1e-5)


def test_products_without_a_predicted_category_get_zero(tmp_path):
    embeddings, categories, centers = _clusters(np.random.default_rng(1))
    categories[0] = ""  # uncategorized
    categories[1] = "Singleton"  # too few products to learn
    model = IntentModel.fit(embeddings, categories)
    assert "Singleton" not in model.categories and "" not in model.categories
    assert model.feature(centers[0].astype(np.float32), categories[:2]).tolist() == [0.0, 0.0]
    model.save(tmp_path)
    loaded = IntentModel.load(tmp_path)
    assert loaded.categories == model.categories
    np.testing.assert_array_equal(loaded.product_class, model.product_class)


def test_no_model_without_two_categories(tmp_path):
    embeddings = np.eye(4, dtype=np.float32)
    assert IntentModel.fit(embeddings, ["", "", "", ""]) is None
    assert IntentModel.fit(embeddings, ["Tea"] * 4) is None
    assert IntentModel.load(tmp_path) is None
