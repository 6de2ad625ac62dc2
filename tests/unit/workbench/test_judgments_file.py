"""Ratings saved in a judgments file on disk: the shared format, merged with what the file holds, never a file left
half written."""

import pytest

from core.judgments import load_judgments
from workbench.errors import JudgmentsNotSaved
from workbench.judgments import Judgments, JudgmentsFile


def test_a_new_file_is_in_the_shared_judgments_format(tmp_path):
    store = JudgmentsFile(tmp_path / "shop" / "judgments.csv")
    store.rate("cordless drill", "D0093", 3)
    store.rate("cordless drill", "D0100", 0)
    store.rate("无线耳机", "D0033", 2)
    assert (tmp_path / "shop" / "judgments.csv").read_text(encoding="utf-8").splitlines()[0] == "query,product_id,gain"
    assert load_judgments(store.path) == {"cordless drill": {"D0093": 3.0, "D0100": 0.0}, "无线耳机": {"D0033": 2.0}}
    assert store.judged("cordless drill") == {"D0093": 3.0, "D0100": 0.0}


def test_a_rating_replaces_the_row_of_the_same_query_and_product_and_keeps_every_other_row_and_column(tmp_path):
    path = tmp_path / "judgments.csv"
    path.write_text("query,product_id,gain,note\nphone,D0001,2,kept\n\"drill, cordless\",D0093,1,\nphone,D0002,0,x\n",
                    encoding="utf-8")
    store = JudgmentsFile(path)
    assert store.judged("phone") == {"D0001": 2.0, "D0002": 0.0}
    store.rate("phone", "D0001", 3)
    store.rate("phone", "D0003", 1)
    assert path.read_text(encoding="utf-8") == ("query,product_id,gain,note\nphone,D0001,3,kept\n"
                                                "\"drill, cordless\",D0093,1,\nphone,D0002,0,x\nphone,D0003,1,\n")


def test_rows_written_by_someone_else_meanwhile_are_kept(tmp_path):
    path = tmp_path / "judgments.csv"
    store = JudgmentsFile(path)
    store.rate("phone", "D0001", 3)
    with open(path, "a", encoding="utf-8") as file:
        file.write("phone,D0009,2\n")
    store.rate("phone", "D0002", 1)
    assert load_judgments(path) == {"phone": {"D0001": 3.0, "D0009": 2.0, "D0002": 1.0}}


def test_a_write_that_fails_leaves_the_file_as_it_was_and_keeps_the_rating_for_the_next_write(tmp_path):
    path = tmp_path / "judgments.csv"
    store = JudgmentsFile(path)
    store.rate("phone", "D0001", 3)
    before = path.read_bytes()
    blocker = tmp_path / ".judgments.csv.workbench-partial"
    blocker.mkdir()  # where the file is written before it is renamed over the old one
    with pytest.raises(JudgmentsNotSaved, match=r"the rating was not saved: cannot write .*judgments.csv .*the "
                                                r"ratings saved before are kept"):
        store.rate("phone", "D0002", 2)
    assert path.read_bytes() == before and store.unsaved == 1
    assert store.judged("phone") == {"D0001": 3.0, "D0002": 2.0}  # shown on the page all the same
    blocker.rmdir()
    store.rate("phone", "D0003", 1)
    assert load_judgments(path) == {"phone": {"D0001": 3.0, "D0002": 2.0, "D0003": 1.0}} and store.unsaved == 0


def test_a_folder_that_cannot_be_made_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("")
    store = JudgmentsFile(tmp_path / "file" / "judgments.csv")
    with pytest.raises(JudgmentsNotSaved, match="cannot write .*; nothing was saved yet"):
        store.rate("phone", "D0001", 3)


def test_a_file_that_is_not_a_judgments_file_is_refused_and_not_touched(tmp_path):
    path = tmp_path / "catalog.csv"
    path.write_text("product_id,title\nD0001,a phone\n")
    store = JudgmentsFile(path)
    with pytest.raises(JudgmentsNotSaved, match="has no column query, gain: it is not a judgments file"):
        store.rate("phone", "D0001", 3)
    assert path.read_text() == "product_id,title\nD0001,a phone\n"


def test_each_shop_has_its_file(tmp_path):
    judgments = Judgments(lambda shop: tmp_path / f"{shop}.csv")
    assert judgments.of("demo") is judgments.of("demo")
    assert judgments.of("home-depot").path == tmp_path / "home-depot.csv"
