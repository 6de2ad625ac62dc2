"""core.settings: defaults, SHOPRANK_* variables, overrides and validation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.settings import Settings


def test_defaults_from_empty_environment():
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.fusion == "weighted"
    assert settings.port == 50051
    assert settings.default_top_k == 10
    assert settings.tokenizer_path is None


def test_reads_shoprank_variables_with_types():
    settings = Settings.from_env(
        {
            "SHOPRANK_TRITON_URL": "localhost:8001",
            "SHOPRANK_PORT": "6000",
            "SHOPRANK_TRITON_TIMEOUT_S": "0.5",
            "SHOPRANK_FUSION": "weighted",
            "SHOPRANK_FUSION_LEXICAL_WEIGHT": "0.4",
            "SHOPRANK_INDEX_DIR": "/data/index",
            "SHOPRANK_TOKENIZER_PATH": "/models/tok.json",
            "SHOPRANK_MAX_TOP_K": "50",
        }
    )
    assert settings.triton_url == "localhost:8001"
    assert settings.port == 6000 and isinstance(settings.port, int)
    assert settings.triton_timeout_s == 0.5 and isinstance(settings.triton_timeout_s, float)
    assert settings.fusion == "weighted"
    assert settings.fusion_lexical_weight == 0.4
    assert settings.index_dir == Path("/data/index")
    assert isinstance(settings.index_dir, Path)
    assert settings.tokenizer_path == Path("/models/tok.json")
    assert settings.max_top_k == 50


def test_every_field_has_a_variable():
    environ = {"SHOPRANK_HOST": "0.0.0.0", "SHOPRANK_GRACE_S": "1.5", "SHOPRANK_RETRIEVE_DEPTH": "7"}
    settings = Settings.from_env(environ)
    assert (settings.host, settings.grace_s, settings.retrieve_depth) == ("0.0.0.0", 1.5, 7)
    names = {f"SHOPRANK_{field.name.upper()}" for field in dataclasses.fields(Settings)}
    assert "SHOPRANK_TRITON_URL" in names and "SHOPRANK_MAX_CANDIDATES" in names


def test_other_variables_ignored():
    settings = Settings.from_env({"PORT": "1", "shoprank_port": "2", "SHOPRANK_UNKNOWN": "x"})
    assert settings.port == 50051


def test_explicit_environ_does_not_read_os_environ(monkeypatch):
    monkeypatch.setenv("SHOPRANK_PORT", "7777")
    assert Settings.from_env({}).port == 50051
    assert Settings.from_env().port == 7777


def test_overrides_win_over_environment():
    settings = Settings.from_env({"SHOPRANK_PORT": "6000", "SHOPRANK_FUSION": "blend"}, port=7000, fusion="rrf")
    assert settings.port == 7000
    assert settings.fusion == "rrf"


def test_none_overrides_are_ignored():
    settings = Settings.from_env({"SHOPRANK_PORT": "6000"}, port=None, triton_url=None)
    assert settings.port == 6000
    assert settings.triton_url == ""


def test_string_path_overrides_become_paths():
    settings = Settings.from_env({}, index_dir="some/index", model_repository="repo", tokenizer_path="t.json")
    assert settings.index_dir == Path("some/index")
    assert settings.model_repository == Path("repo")
    assert settings.tokenizer_path == Path("t.json")


def test_empty_optional_path_is_none():
    assert Settings.from_env({"SHOPRANK_TOKENIZER_PATH": ""}).tokenizer_path is None


def test_tokenizer_file_default_and_explicit():
    settings = Settings.from_env({}, model_repository="repo", encoder_model="enc")
    assert settings.tokenizer_file == Path("repo/enc/tokenizer.json")
    assert Settings.from_env({}, tokenizer_path="x/t.json").tokenizer_file == Path("x/t.json")


def test_multilingual_tokenizer_file_beside_the_model():
    assert Settings().multilingual_tokenizer_file == Path("model_repository/cpu/multilingual_encoder/sp.model")
    settings = Settings.from_env({"SHOPRANK_MULTILINGUAL_MODEL": "use"}, model_repository="repo")
    assert settings.multilingual_tokenizer_file == Path("repo/use/sp.model")


@pytest.mark.parametrize(
    "name, value",
    [
        ("SHOPRANK_PORT", "abc"),
        ("SHOPRANK_PORT", "1.5"),
        ("SHOPRANK_RRF_K", ""),
        ("SHOPRANK_TRITON_TIMEOUT_S", "fast"),
        ("SHOPRANK_FUSION_LEXICAL_WEIGHT", "heavy"),
    ],
)
def test_unparsable_values_raise_config_error_naming_variable(name, value):
    with pytest.raises(ConfigError) as error:
        Settings.from_env({name: value})
    assert name in str(error.value)


@pytest.mark.parametrize("fusion", ["max", "RRF", "", "Blend"])
def test_fusion_must_be_rrf_or_weighted(fusion):
    with pytest.raises(ConfigError, match="fusion must be one of rrf, weighted"):
        Settings.from_env({"SHOPRANK_FUSION": fusion})


@pytest.mark.parametrize("fusion", ["rrf", "weighted"])
def test_valid_fusions(fusion):
    assert Settings(fusion=fusion).fusion == fusion


def test_the_fusion_formerly_called_blend_is_the_weighted_one():
    assert Settings(fusion="blend").fusion == Settings.from_env({"SHOPRANK_FUSION": "blend"}).fusion == "weighted"


@pytest.mark.parametrize("weight", ["-0.1", "1.01", "nan"])
def test_blend_weight_out_of_range(weight):
    with pytest.raises(ConfigError, match="fusion_lexical_weight"):
        Settings.from_env({"SHOPRANK_FUSION_LEXICAL_WEIGHT": weight})


@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_blend_weight_bounds_inclusive(weight):
    assert Settings(fusion_lexical_weight=weight).fusion_lexical_weight == weight


@pytest.mark.parametrize(
    "name", ["rrf_k", "retrieve_depth", "default_top_k", "max_top_k", "max_query_chars", "max_candidates"]
)
def test_counts_must_be_positive(name):
    with pytest.raises(ConfigError, match=f"{name} must be at least 1"):
        Settings(**{name: 0})
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({f"SHOPRANK_{name.upper()}": "-5"})
    assert getattr(Settings(**{name: 1}), name) == 1


@pytest.mark.parametrize("edits", [-1, 3])
def test_spelling_edits_are_0_1_or_2(edits):
    with pytest.raises(ConfigError, match="max_spelling_edits must be 0 \\(off\\), 1 or 2"):
        Settings(max_spelling_edits=edits)
    assert Settings.from_env({"SHOPRANK_MAX_SPELLING_EDITS": "0"}).max_spelling_edits == 0


def test_override_validated_too():
    with pytest.raises(ConfigError):
        Settings.from_env({}, fusion="nope")


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().port = 1  # type: ignore[misc]


def test_numeric_threads_default_one_zero_keeps_library_defaults_negative_refused():
    assert Settings().numeric_threads == 1
    assert Settings.from_env({"SHOPRANK_NUMERIC_THREADS": "0"}).numeric_threads == 0
    with pytest.raises(ConfigError, match="numeric_threads"):
        Settings.from_env({"SHOPRANK_NUMERIC_THREADS": "-1"})


def test_cross_encoder_depth_default_30_zero_scores_every_candidate_negative_refused():
    assert Settings().cross_encoder_depth == 30
    assert Settings(cross_encoder_depth=0).cross_encoder_depth == 0
    assert Settings.from_env({"SHOPRANK_CROSS_ENCODER_DEPTH": "30"}).cross_encoder_depth == 30
    with pytest.raises(ConfigError, match="cross_encoder_depth"):
        Settings(cross_encoder_depth=-1)


def test_a_shop_setting_is_a_shop_name():
    assert Settings.from_env({"SHOPRANK_SHOP": "home-depot"}).shop == "home-depot"
    with pytest.raises(ConfigError, match="shop"):
        Settings(shop="Home Depot")
