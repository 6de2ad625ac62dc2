"""orchestrator.harness: evaluation and training (run_on_catalog) never read or write the serving rollout state; the
scratch files of a service a tool starts for itself (scratch_state)."""

import contextlib
import dataclasses
from pathlib import Path

from orchestrator import harness


@dataclasses.dataclass(frozen=True)
class FakeSettings:
    profile_store: str = "redis://127.0.0.1:6379/0"
    rollout_state: Path = Path(".shoprank/rollout.json")
    experiment_state: Path = Path(".shoprank/experiments.json")
    impression_log: Path = Path(".shoprank/impressions")
    rerank_depth: int = 100


def test_the_service_of_an_evaluation_starts_from_a_fresh_rollout_state(monkeypatch):
    seen = {}

    @contextlib.contextmanager
    def catalog_stack(settings, catalog, index_dir, adjust, skip_untitled):
        yield adjust(settings)

    async def with_service(settings, work):
        seen["settings"] = settings
        seen["existed_during"] = settings.rollout_state.parent.is_dir()
        return work

    monkeypatch.setattr(harness, "catalog_stack", catalog_stack)
    monkeypatch.setattr(harness, "with_service", with_service)
    result = harness.run_on_catalog(FakeSettings(), Path("catalog.csv"), "work",
                                    adjust=lambda settings: dataclasses.replace(settings, rerank_depth=20))
    settings = seen["settings"]
    assert result == "work" and settings.rerank_depth == 20  # the caller's adjustment still applies
    assert settings.rollout_state != FakeSettings.rollout_state and seen["existed_during"]
    assert settings.experiment_state.parent == settings.impression_log.parent == settings.rollout_state.parent
    assert settings.profile_store == FakeSettings.profile_store  # the settings' profile store stays
    assert not settings.rollout_state.parent.exists()  # removed afterwards


def test_scratch_state_puts_every_file_of_a_service_under_the_folder(tmp_path):
    files = harness.scratch_state(tmp_path)
    assert files == {"profile_store": f"sqlite:///{tmp_path.resolve()}/profiles.db",
                     "rollout_state": tmp_path.resolve() / "rollout.json",
                     "experiment_state": tmp_path.resolve() / "experiments.json",
                     "impression_log": tmp_path.resolve() / "impressions"}
    assert not files["rollout_state"].exists()  # no copy asked for: the repository's newest versions serve
    assert list(tmp_path.iterdir()) == []


def test_scratch_state_copies_the_rollout_state_and_keeps_named_services_apart(tmp_path):
    checkout = tmp_path / "checkout-rollout.json"
    checkout.write_text('{"models": {"reranker": {"stable": "2"}}}')
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    a = harness.scratch_state(scratch, "A", rollout_from=checkout, profile_store="redis://127.0.0.1:1/0")
    b = harness.scratch_state(scratch, "B", rollout_from=tmp_path / "none.json")
    assert a["rollout_state"].read_text() == checkout.read_text() and not b["rollout_state"].exists()
    assert a["profile_store"] == "redis://127.0.0.1:1/0" and b["profile_store"].endswith("/profiles-B.db")
    assert a["experiment_state"].name == "experiments-A.json" and b["impression_log"].name == "impressions-B"
    assert harness.as_environment(a) == {"SHOPRANK_PROFILE_STORE": "redis://127.0.0.1:1/0",
                                         "SHOPRANK_ROLLOUT_STATE": str(a["rollout_state"]),
                                         "SHOPRANK_EXPERIMENT_STATE": str(a["experiment_state"]),
                                         "SHOPRANK_IMPRESSION_LOG": str(a["impression_log"])}
    # A service started with these variables reads them back as the same settings.
    settings = harness.Settings.from_env(harness.as_environment(a))
    assert (settings.profile_store, settings.rollout_state, settings.experiment_state, settings.impression_log) == (
        a["profile_store"], a["rollout_state"], a["experiment_state"], a["impression_log"])
