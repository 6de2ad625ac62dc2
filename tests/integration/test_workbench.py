"""The relevance workbench in headless Chromium against a real service (real Triton, real gRPC server, the demo
index): the whole journey of workbench/journey.py, a judgments file that cannot be written, and an experiment's
arms listed through the real admin API."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from urllib.parse import urlencode

import grpc
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from core._proto.shoprank.v1 import admin_pb2, admin_pb2_grpc
from core.judgments import load_judgments
from orchestrator.harness import scratch_state
from orchestrator.triton_process import free_port
from workbench.config import WorkbenchConfig
from workbench.journey import QUERY, Journey, chrome, report
from workbench.server import WorkbenchThread

from .conftest import DEMO_CATALOG, ServiceThread

pytestmark = pytest.mark.integration

TOKEN = "workbench-test-token"


def config_for(address: str, out: Path, **fields) -> WorkbenchConfig:
    return WorkbenchConfig(servers=(address,), catalogs=(("demo", DEMO_CATALOG),),
                           judgments_out=str(out / "{shop}-judgments.csv"), port=0, **fields)


def test_the_browser_journey_passes_every_check(service, tmp_path):
    config = config_for(service.address, tmp_path)
    down = dataclasses.replace(config, servers=(f"127.0.0.1:{free_port()}",))
    with WorkbenchThread(config) as bench, WorkbenchThread(down) as dead:
        journey = Journey(bench.url, config.judgments_file("demo"), tmp_path / "screenshots", dead.url)
        journey.run()
    lines: list[str] = []
    report(journey.checks, lines.append)
    assert not journey.failed, "\n".join(lines)
    assert len(journey.checks) >= 30 and journey.pages >= 10
    # The ratings are in the shared judgments format, as `shoprank eval` reads them.
    judged = load_judgments(config.judgments_file("demo"))
    assert list(judged) == [QUERY] and sorted(judged[QUERY].values()) == [0.0, 1.0, 2.0]
    product, before, after = journey.moved
    assert 0 < after < before, f"{product} moved from {before} to {after}"
    assert len(list((tmp_path / "screenshots").glob("*.png"))) >= 6


def rate(driver, item, gain: int) -> str:
    """Rate `item` and return what its status line says once the workbench answered."""
    item.find_element(By.CSS_SELECTOR, f"input[data-rate][value='{gain}']").click()
    status = item.find_element(By.CSS_SELECTOR, ".saved")
    WebDriverWait(driver, 30).until(lambda _: status.text.startswith(("saved", "not saved")))
    return status.text


def test_a_judgments_file_that_cannot_be_written_is_a_clear_error_and_loses_no_saved_rating(service, tmp_path):
    config = config_for(service.address, tmp_path)
    path = config.judgments_file("demo")
    driver = chrome()
    try:
        with WorkbenchThread(config) as bench:
            driver.get(f"{bench.url}/?" + urlencode({"q": "cordless drill"}))
            items = driver.find_elements(By.CSS_SELECTOR, ".results .item")
            first, second, third = (item.get_attribute("data-product") for item in items[:3])
            assert rate(driver, items[0], 3) == "saved 3"
            # The workbench writes beside the file, then renames: a directory in that place makes every write fail.
            blocker = path.with_name(f".{path.name}.workbench-partial")
            blocker.mkdir()
            message = rate(driver, items[1], 2)
            assert message.startswith("not saved:") and f"cannot write {path}" in message
            assert "the ratings saved before are kept" in message and "Traceback" not in driver.page_source
            assert load_judgments(path) == {"cordless drill": {first: 3.0}}
            blocker.rmdir()
            # The next rating that saves writes the one that could not be written too.
            assert rate(driver, items[2], 1) == "saved 1"
            assert load_judgments(path) == {"cordless drill": {first: 3.0, second: 2.0, third: 1.0}}
    finally:
        driver.quit()


def test_a_judgments_file_that_is_not_one_is_refused_and_left_as_it_was(service, tmp_path):
    config = config_for(service.address, tmp_path)
    path = config.judgments_file("demo")
    path.write_text("product_id,title\nD0001,a phone\n")
    driver = chrome()
    try:
        with WorkbenchThread(config) as bench:
            driver.get(f"{bench.url}/?" + urlencode({"q": "phone"}))
            assert "it is not a judgments file" in driver.find_element(By.CSS_SELECTOR, ".message.warning").text
            items = driver.find_elements(By.CSS_SELECTOR, ".results .item")
            assert len(items) >= 5  # the search is shown all the same
            assert "it is not a judgments file" in rate(driver, items[0], 2)
    finally:
        driver.quit()
    assert path.read_text() == "product_id,title\nD0001,a phone\n"


@pytest.fixture
def admin_service(settings, triton, demo_index, tmp_path):
    running = ServiceThread(dataclasses.replace(
        settings, index_dir=demo_index, triton_url=triton.url, admin_token=TOKEN, admin_port=0,
        **scratch_state(tmp_path))).start()
    try:
        yield running
    finally:
        running.stop()


def test_an_experiments_arms_are_listed_and_compared_side_by_side(admin_service, tmp_path):
    admin = f"127.0.0.1:{admin_service.service.admin_port}"
    with grpc.insecure_channel(admin) as channel:
        admin_pb2_grpc.AdminStub(channel).StartExperiment(
            admin_pb2.StartExperimentRequest(name="cheap-vs-default", control="default",
                                             treatment="no-cross-encoder", method="interleave", share=0.2),
            metadata=(("authorization", f"Bearer {TOKEN}"),), timeout=30)
    config = config_for(admin_service.address, tmp_path, admins=(admin,), admin_token=TOKEN)
    driver = chrome()
    try:
        with WorkbenchThread(config) as bench:
            driver.get(f"{bench.url}/compare?" + urlencode({"q": "cordless drill"}))
            listed = driver.find_element(By.CSS_SELECTOR, ".experiment-list").text
            assert "cheap-vs-default" in listed and "running" in listed and "no-cross-encoder" in listed
            driver.find_element(By.LINK_TEXT, "Compare its arms").click()
            WebDriverWait(driver, 30).until(lambda d: "right=no-cross-encoder" in d.current_url)
            titles = [element.text for element in driver.find_elements(By.CSS_SELECTOR, ".column > h3")]
            assert titles == ["Left: default", "Right: no-cross-encoder"]
            for side in ("left", "right"):
                assert len(driver.find_elements(By.CSS_SELECTOR, f"[data-column={side}] .item")) >= 5
            assert "products in both rankings" in driver.find_element(By.ID, "overlap").text
            # A wrong token is a message in the page; the comparison still works.
            wrong = dataclasses.replace(config, admin_token="wrong")
        with WorkbenchThread(wrong) as bench:
            driver.get(f"{bench.url}/compare?" + urlencode({"q": "cordless drill"}))
            assert "refused the token" in driver.find_element(By.CSS_SELECTOR, ".experiments .message").text
            assert len(driver.find_elements(By.CSS_SELECTOR, "[data-column=right] .item")) >= 5
    finally:
        driver.quit()


def test_a_service_that_comes_back_is_answered_within_seconds(settings, triton, demo_index, tmp_path):
    port = free_port()
    config = config_for(f"127.0.0.1:{port}", tmp_path)
    driver = chrome()
    try:
        with WorkbenchThread(config) as bench:
            driver.get(f"{bench.url}/?" + urlencode({"q": "phone"}))
            assert "did not answer" in driver.find_element(By.CSS_SELECTOR, ".message.error").text
            running = ServiceThread(dataclasses.replace(
                settings, index_dir=demo_index, triton_url=triton.url, port=port,
                rollout_state=tmp_path / "rollout.json", experiment_state=tmp_path / "experiments.json",
                impression_log=tmp_path / "impressions")).start()
            try:
                deadline = time.monotonic() + 10
                while True:
                    driver.get(f"{bench.url}/?" + urlencode({"q": "phone"}))
                    if driver.find_elements(By.CSS_SELECTOR, ".results .item") or time.monotonic() > deadline:
                        break
                    time.sleep(0.5)
                assert driver.find_elements(By.CSS_SELECTOR, ".results .item")
            finally:
                running.stop()
    finally:
        driver.quit()
    assert not os.path.exists(config.judgments_file("demo"))
