"""cli.options.on_catalog: a command's options reach the harness (--index unless an index is named, and
--skip-untitled)."""

import argparse
from pathlib import Path

from cli import options


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
