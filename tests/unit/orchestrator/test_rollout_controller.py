"""orchestrator.rollout.controller and .versions over a fake Triton client (one function's logic each; the real
Triton and gRPC servers are in tests/integration/test_rollout.py)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest

from core.errors import ConfigError, RolloutError, TritonError
from core.settings import Settings
from orchestrator.rollout.controller import RolloutController, bucket
from orchestrator.rollout.versions import VersionLoader, load_config

CONFIG = 'name: "reranker"\nbackend: "python"\nmax_batch_size: 8\n'


class FakeTriton:
    """Keeps the versions each load asks for; `broken` versions fail to load."""

    def __init__(self) -> None:
        self.loaded: dict[str, set[str]] = {}
        self.loads: list[tuple[str, list[str]]] = []
        self.broken: set[str] = set()

    async def load_model(self, name, config_json, timeout_s):
        versions = [str(v) for v in json.loads(config_json)["versionPolicy"]["specific"]["versions"]]
        self.loads.append((name, versions))
        if self.broken & set(versions):
            raise TritonError(f"failed to load {name} version {sorted(self.broken & set(versions))}")
        self.loaded[name] = set(versions)

    async def is_model_ready(self, name, version=""):
        return version in self.loaded.get(name, set())


@pytest.fixture
def repository(tmp_path):
    folder = tmp_path / "repo" / "reranker"
    for version in ("1", "2", "3"):
        (folder / version).mkdir(parents=True)
        (folder / version / "combination.json").write_text(json.dumps({"latin": {"reranker": 1.0, "bm25": float(version)}}))
    (folder / "config.pbtxt").write_text(CONFIG)
    return tmp_path / "repo"


def make(repository, tmp_path, triton=None, warm=None, **settings):
    triton = triton or FakeTriton()
    values = {"model_repository": repository, "rollout_state": tmp_path / "rollout.json", "rollout_min_requests": 5,
              **settings}
    loader = VersionLoader(triton, repository, load_timeout_s=1.0)  # type: ignore[arg-type]
    return RolloutController(loader, Settings(**values), warm=warm), triton


def run(coroutine):
    return asyncio.run(coroutine)


def test_load_config_names_exactly_the_wanted_versions(repository):
    config = json.loads(load_config(repository, "reranker", ["3", "1"]))
    assert config["versionPolicy"] == {"specific": {"versions": ["1", "3"]}} and config["name"] == "reranker"
    with pytest.raises(ConfigError, match="run `shoprank export`"):
        load_config(repository, "bi_encoder", ["1"])


def test_first_start_serves_the_newest_version_and_records_it(repository, tmp_path):
    async def scenario():
        controller, triton = make(repository, tmp_path)
        await controller.open()
        await controller.close()
        return controller, triton

    controller, triton = run(scenario())
    assert controller.models["reranker"].stable == "3" and triton.loaded == {"reranker": {"3"}}
    saved = json.loads((tmp_path / "rollout.json").read_text())["models"]["reranker"]
    assert saved["stable"] == "3" and saved["history"][0]["action"] == "release"


def test_canary_routing_is_sticky_and_grows_with_the_share(repository, tmp_path):
    users = [f"user-{i}" for i in range(2000)]

    async def scenario():
        (tmp_path / "rollout.json").write_text(json.dumps({"models": {"reranker": {"stable": "1"}}}))
        controller, triton = make(repository, tmp_path)
        await controller.open()
        warmed = []
        controller.warm = lambda model, version: _record(warmed, (model, version))
        await controller.start("reranker", "2", 10)
        at10 = {user for user in users if controller.route("reranker", user).version == "2"}
        assert all(controller.route("reranker", user).version == "2" for user in at10)  # sticky
        await controller.shift("reranker", 50)
        at50 = {user for user in users if controller.route("reranker", user).version == "2"}
        await controller.close()
        return at10, at50, warmed, triton

    at10, at50, warmed, triton = run(scenario())
    assert 0.07 < len(at10) / len(users) < 0.13 and 0.45 < len(at50) / len(users) < 0.55
    assert at10 <= at50  # raising the share only adds users
    assert warmed == [("reranker", "2")]
    assert triton.loads[-1] == ("reranker", ["1", "2"])


async def _record(calls, item):
    calls.append(item)


def test_promote_serves_everyone_and_unloads_the_old_version_after_it_drains(repository, tmp_path):
    async def scenario():
        (tmp_path / "rollout.json").write_text(json.dumps({"models": {"reranker": {"stable": "1"}}}))
        controller, triton = make(repository, tmp_path)
        await controller.open()
        await controller.start("reranker", "2", 50)
        with controller.track("reranker", "1"):  # a request still on version 1
            await controller.promote("reranker")
            assert {controller.route("reranker", f"u{i}").version for i in range(200)} == {"2"}
            await asyncio.sleep(0.1)
            assert triton.loaded["reranker"] == {"1", "2"}  # not unloaded under a request
        await controller.settled()
        await controller.close()
        return controller, triton

    controller, triton = run(scenario())
    assert triton.loaded["reranker"] == {"2"}
    assert [event["action"] for event in controller.models["reranker"].history][-3:] == ["live", "promote", "unload"]
    assert controller.combination("2")["latin"]["bm25"] == 2.0


def test_rollback_by_request_keeps_the_stable_version(repository, tmp_path):
    async def scenario():
        (tmp_path / "rollout.json").write_text(json.dumps({"models": {"reranker": {"stable": "1"}}}))
        controller, triton = make(repository, tmp_path)
        await controller.open()
        await controller.start("reranker", "2", 100)
        await controller.rollback("reranker", "looks wrong")
        await controller.settled()
        await controller.close()
        return controller, triton

    controller, triton = run(scenario())
    rollout = controller.models["reranker"]
    assert (rollout.stable, rollout.candidate) == ("1", "") and triton.loaded["reranker"] == {"1"}
    assert rollout.history[-2]["action"] == "rollback" and rollout.history[-2]["detail"] == "looks wrong"


def test_a_version_that_fails_to_load_is_rolled_back_with_its_reason(repository, tmp_path):
    async def scenario():
        (tmp_path / "rollout.json").write_text(json.dumps({"models": {"reranker": {"stable": "1"}}}))
        triton = FakeTriton()
        triton.broken.add("3")
        controller, _ = make(repository, tmp_path, triton=triton)
        await controller.open()
        with pytest.raises(RolloutError, match="rolled back: failed to load or warm up: failed to load reranker"):
            await controller.start("reranker", "3", 10)
        await controller.settled()
        await controller.close()
        return controller, triton

    controller, triton = run(scenario())
    rollout = controller.models["reranker"]
    assert rollout.candidate == "" and triton.loaded["reranker"] == {"1"}
    assert rollout.history[-1]["action"] == "rollback" and "failed to load" in rollout.history[-1]["detail"]
    saved = json.loads((tmp_path / "rollout.json").read_text())["models"]["reranker"]
    assert saved["history"][-1]["action"] == "rollback"


@pytest.mark.parametrize("outcome, expected", [
    ({"ok": False, "latency_ms": 10.0}, "error rate 100.0%"),
    ({"ok": True, "latency_ms": 5000.0}, "p99 5000 ms"),
])
def test_guards_roll_a_failing_canary_back(repository, tmp_path, outcome, expected):
    async def scenario():
        (tmp_path / "rollout.json").write_text(json.dumps({"models": {"reranker": {"stable": "1"}}}))
        controller, _ = make(repository, tmp_path, rollout_max_p99_ms=1000.0)
        await controller.open()
        await controller.start("reranker", "2", 10)
        for _ in range(4):
            controller.record("reranker", "2", **outcome)
        await controller.check_guards()
        assert controller.models["reranker"].candidate == "2"  # below rollout_min_requests: not judged yet
        controller.record("reranker", "2", **outcome)
        controller.record("reranker", "1", ok=False, latency_ms=9000.0)  # the stable version's own don't count
        await controller.check_guards()
        await controller.settled()
        await controller.close()
        return controller

    rollout = run(scenario()).models["reranker"]
    assert rollout.candidate == ""
    assert rollout.history[-2]["action"] == "rollback" and rollout.history[-2]["detail"].startswith(f"guard: {expected}")


def test_guard_rolls_back_a_shadow_that_disagrees(repository, tmp_path):
    async def scenario():
        (tmp_path / "rollout.json").write_text(json.dumps({"models": {"reranker": {"stable": "1"}}}))
        controller, _ = make(repository, tmp_path)
        await controller.open()
        await controller.start("reranker", "2", 100, mode="shadow")
        route = controller.route("reranker", "anyone")
        assert (route.version, route.shadow) == ("1", "2")  # the stable version serves
        for _ in range(5):
            controller.record_agreement("reranker", "2", 0.1)
        await controller.check_guards()
        await controller.close()
        return controller

    rollout = run(scenario()).models["reranker"]
    assert rollout.candidate == "" and "shadow agreement (RBO) 0.100" in rollout.history[-1]["detail"]


def test_state_survives_a_restart(repository, tmp_path):
    async def scenario():
        (tmp_path / "rollout.json").write_text(json.dumps({"models": {"reranker": {"stable": "1"}}}))
        first, _ = make(repository, tmp_path)
        await first.open()
        await first.start("reranker", "2", 30)
        await first.close()
        second, triton = make(repository, tmp_path)
        await second.open()
        await second.close()
        return second, triton

    controller, triton = run(scenario())
    rollout = controller.models["reranker"]
    assert (rollout.stable, rollout.candidate, rollout.mode, rollout.percent) == ("1", "2", "canary", 30)
    assert triton.loaded["reranker"] == {"1", "2"}


def test_actions_that_do_not_apply_are_refused_with_the_reason(repository, tmp_path):
    async def scenario():
        (tmp_path / "rollout.json").write_text(json.dumps({"models": {"reranker": {"stable": "1"}}}))
        controller, _ = make(repository, tmp_path)
        await controller.open()
        errors = []
        for action in (controller.promote("reranker"), controller.start("reranker", "1", 10),
                       controller.start("reranker", "9", 10), controller.start("reranker", "2", 101),
                       controller.start("bi_encoder", "2", 10), controller.start("ranker", "2", 10)):
            with pytest.raises(RolloutError) as error:
                await action
            errors.append(str(error.value))
        await controller.start("reranker", "2", 10)
        with pytest.raises(RolloutError, match="already rolling out version 2"):
            await controller.start("reranker", "3", 10)
        await controller.close()
        return errors

    errors = run(scenario())
    assert "no rollout in progress" in errors[0]
    assert "already the stable version" in errors[1]
    assert "no version '9'" in errors[2]
    assert "0..100" in errors[3]
    assert "Build an index with the new version" in errors[4]
    assert "unknown model 'ranker'" in errors[5]


def test_a_pinned_version_serves_without_state_and_refuses_rollouts(repository, tmp_path):
    async def scenario():
        controller, triton = make(repository, tmp_path, reranker_version="2")
        await controller.open()
        with pytest.raises(RolloutError, match="pinned"):
            await controller.start("reranker", "3", 10)
        await controller.close()
        return controller, triton

    controller, triton = run(scenario())
    assert triton.loaded["reranker"] == {"2"} and not (tmp_path / "rollout.json").exists()


def test_buckets_are_spread_evenly():
    counts = Counter(bucket(f"user-{i}") // 10 for i in range(10000))
    assert min(counts.values()) > 900 and max(counts.values()) < 1100
