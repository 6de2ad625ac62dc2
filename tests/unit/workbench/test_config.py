"""The workbench's configuration and how its command-line values are read."""

from pathlib import Path

import pytest

from core.errors import ConfigError
from workbench.config import WorkbenchConfig, catalog_entry


def test_a_catalog_s_shop_is_its_folder_name_unless_given():
    assert catalog_entry("data/demo/catalog.csv") == ("demo", Path("data/demo/catalog.csv"))
    assert catalog_entry("home-depot=/data/hd/catalog.csv") == ("home-depot", Path("/data/hd/catalog.csv"))


def test_the_judgments_file_of_a_shop_and_the_admin_api_of_a_server():
    config = WorkbenchConfig(servers=("a:1", "b:2"), admins=("a:9",), judgments_out="out/{shop}.csv")
    assert config.judgments_file("demo") == Path("out/demo.csv")
    assert (config.admin_of("a:1"), config.admin_of("b:2")) == ("a:9", "")


@pytest.mark.parametrize("fields, message", [
    (dict(servers=()), "at least one --server"),
    (dict(servers=("localhost",)), "'localhost' is not HOST:PORT"),
    (dict(servers=("a:1",), admins=("a:2", "b:3")), "more --admin than --server"),
    (dict(servers=("a:1",), judgments_out="ratings.jsonl"), "writes judgments as CSV"),
    (dict(servers=("a:1",), port=70000), "is not a TCP port"),
])
def test_a_bad_value_is_named(fields, message):
    with pytest.raises(ConfigError, match=message):
        WorkbenchConfig(**fields)
