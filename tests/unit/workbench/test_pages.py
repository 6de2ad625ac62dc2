"""The pages' validation and error answers through Starlette's TestClient, without any fake service: the fields are
refused before a call is made, and a service that is down is a real closed port. The pages' answers to a real
service are proven in tests/integration/test_workbench.py, in a browser."""

import pytest
from starlette.testclient import TestClient

from orchestrator.triton_process import free_port
from workbench.app import create_app
from workbench.config import WorkbenchConfig


@pytest.fixture
def client(tmp_path):
    config = WorkbenchConfig(servers=(f"127.0.0.1:{free_port()}",), judgments_out=str(tmp_path / "{shop}.csv"))
    with TestClient(create_app(config), raise_server_exceptions=False) as client:
        yield client


def test_the_search_page_without_a_query_is_the_form(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="q"' in page.text and "Type a query" in page.text


def test_a_bad_field_is_a_400_page_with_the_form_and_the_message(client):
    page = client.get("/", params={"q": "drill", "top_k": "many"})
    assert page.status_code == 400
    assert "results must be a whole number, not &#39;many&#39;" in page.text and 'id="q"' in page.text


def test_a_service_that_is_down_is_a_503_page_that_says_so_without_a_trace(client):
    page = client.get("/", params={"q": "drill"})
    assert page.status_code == 503
    assert "did not answer Search (UNAVAILABLE" in page.text and "Traceback" not in page.text
    answer = client.get("/api/search", params={"q": "drill"})
    assert answer.status_code == 503 and "did not answer Search" in answer.json()["error"]


def test_a_comparison_with_an_arm_the_api_cannot_serve_and_a_service_that_is_down(client):
    page = client.get("/compare", params={"q": "drill", "left": "default", "right": "reranker=2"})
    assert page.status_code == 503 and "did not answer Search" in page.text


@pytest.mark.parametrize("path, body, message", [
    ("/api/judgments", b"not json", "the body is not JSON"),
    ("/api/judgments", b"[]", "the body must be a JSON object"),
    ("/api/judgments", b'{"shop": "demo", "product_id": "D1", "gain": 1}', "query: a non-empty string is required"),
    ("/api/judgments", b'{"shop": "../etc", "query": "q", "product_id": "D1", "gain": 1}',
     "shop name '../etc' is not usable"),
    ("/api/judgments", b'{"shop": "demo", "query": "q", "product_id": "D1", "gain": 9}',
     "a rating is a whole number 0..3"),
    ("/api/feedback", b'{"server": "elsewhere:1", "user": "u", "product_id": "D1", "type": "click", "position": 1}',
     "is not one this workbench was started with"),
    ("/api/feedback", b'{"server": "SERVER", "user": "u", "product_id": "D1", "type": "like", "position": 1}',
     "type must be one of click, cart, purchase"),
    ("/api/feedback", b'{"server": "SERVER", "user": "u", "product_id": "D1", "type": "click", "position": 0}',
     "position: the product's 1-based position"),
])
def test_a_bad_api_call_is_a_400_with_a_json_error(client, path, body, message):
    server = client.app.state.workbench.config.servers[0]
    answer = client.post(path, content=body.replace(b"SERVER", server.encode()),
                         headers={"content-type": "application/json"})
    assert answer.status_code == 400 and message in answer.json()["error"]


def test_an_unknown_path_is_a_404_page_or_json(client):
    assert client.get("/nowhere").status_code == 404 and "no such page" in client.get("/nowhere").text
    assert client.get("/api/nowhere").json() == {"error": "no such call: /api/nowhere"}


def test_the_assets_are_served_from_the_package(client):
    for asset in ("workbench.css", "workbench.js", "favicon.svg"):
        assert client.get(f"/static/{asset}").status_code == 200
