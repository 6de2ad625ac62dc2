"""orchestrator.harness.run_on_catalog: evaluation and training never read or write the serving rollout state."""

import contextlib
import dataclasses
from pathlib import Path

from orchestrator import harness


@dataclasses.dataclass(frozen=True)
class FakeSettings:
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
    assert not settings.rollout_state.parent.exists()  # removed afterwards
