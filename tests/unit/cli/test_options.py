"""cli.options: a command's options reach the harness (--index unless an index is named, and --skip-untitled);
the admin commands' answers printed as text or JSON."""

import argparse
import json
import math
from pathlib import Path

import pytest

from cli import options
from core._proto.shoprank.v1 import admin_pb2


def run_with(monkeypatch, args: argparse.Namespace, **kwargs) -> dict:
    seen = {}

    def run_on_catalog(settings, catalog, work, index_dir, adjust, skip_untitled):
        seen.update(settings=settings, index_dir=index_dir, skip_untitled=skip_untitled)
        return work

    monkeypatch.setattr(options, "run_on_catalog", run_on_catalog)
    assert options.on_catalog(args, Path("catalog.csv"), "work", **kwargs) == "work"
    return seen


def test_a_commands_options_reach_the_harness(monkeypatch):
    args = argparse.Namespace(index="prebuilt", skip_untitled=True, rerank_depth=20)
    seen = run_with(monkeypatch, args)
    assert seen["index_dir"] == Path("prebuilt") and seen["skip_untitled"]
    assert seen["settings"].rerank_depth == 20


def test_a_named_index_wins_over_the_option_and_none_is_the_harness_cache(monkeypatch):
    named = run_with(monkeypatch, argparse.Namespace(index="prebuilt"), index_dir=Path("other"))
    assert named["index_dir"] == Path("other")
    seen = run_with(monkeypatch, argparse.Namespace())
    assert seen["index_dir"] is None and not seen["skip_untitled"]


def words(status: admin_pb2.RolloutStatus) -> str:
    return f"{status.model} at {status.stable_version}"


STATUSES = [admin_pb2.RolloutStatus(model="reranker", stable_version="1", shadow_agreement=math.nan),
            admin_pb2.RolloutStatus(model="encoder", stable_version="2")]


def test_one_answer_is_printed_as_text_or_a_json_object(capsys):
    options.print_answer(argparse.Namespace(json=False), STATUSES[0], words)
    assert capsys.readouterr().out == "reranker at 1\n"
    options.print_answer(argparse.Namespace(json=True), STATUSES[0], words)
    printed = json.loads(capsys.readouterr().out)
    assert printed["model"] == "reranker" and printed["stable_version"] == "1" and printed["shadow_agreement"] == "NaN"


@pytest.mark.parametrize("empty", ["", "no rollouts"])
def test_a_list_of_answers_is_printed_as_lines_of_text_or_a_json_array(capsys, empty):
    options.print_answers(argparse.Namespace(json=False), STATUSES, words, empty=empty)
    assert capsys.readouterr().out == "reranker at 1\nencoder at 2\n"
    options.print_answers(argparse.Namespace(json=True), STATUSES, words, empty=empty)
    assert json.loads(capsys.readouterr().out) == [json.loads(options.json_format.MessageToJson(
        status, preserving_proto_field_name=True)) for status in STATUSES]
    options.print_answers(argparse.Namespace(json=False), [], words, empty=empty)
    assert capsys.readouterr().out == empty + "\n"
    options.print_answers(argparse.Namespace(json=True), [], words, empty=empty)
    assert json.loads(capsys.readouterr().out) == []
