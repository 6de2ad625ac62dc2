import pytest

from core.errors import DataError
from core.query_lists import sample_negatives
from training import negatives


def test_save_and_load_round_trip(tmp_path):
    mined = {"cordless drill": ["3", "1", "2"], "手机": [], "q": ["9"]}
    path = tmp_path / "sub" / "negatives.jsonl"
    negatives.save(path, mined)
    assert negatives.load(path) == mined
    assert not path.with_name(path.name + ".partial").exists()


def test_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(DataError, match="shoprank train negatives"):
        negatives.load(tmp_path / "none.jsonl")


@pytest.mark.parametrize("line", ['{"query": "q"}', "not json", '{"query": 3, "product_ids": ["1"]}',
                                  '{"query": "q", "product_ids": "1"}'])
def test_malformed_line_is_named(tmp_path, line):
    path = tmp_path / "negatives.jsonl"
    path.write_text('{"query": "ok", "product_ids": ["1"]}\n' + line + "\n")
    with pytest.raises(DataError, match="line 2"):
        negatives.load(path)


def test_sample_is_seeded_bounded_and_from_the_pool():
    mined = {"q": [str(n) for n in range(50)], "few": ["1"]}
    first = sample_negatives(mined, "q", 5, seed=0)
    assert len(first) == 5 and len(set(first)) == 5 and set(first) <= set(mined["q"])
    assert sample_negatives(mined, "q", 5, seed=0) == first
    assert sample_negatives(mined, "q", 5, seed=1) != first
    assert sample_negatives(mined, "few", 5, seed=0) == ["1"]
    assert sample_negatives(mined, "unknown", 5, seed=0) == []
