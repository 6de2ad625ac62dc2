"""The catalog API on a real service: the admin port of an orchestrator whose catalog is a shop in a real Milvus Lite
server, embedding through a real tritonserver. Every change is checked through the service's own search right after
its acknowledgement, and through Triton's statistics for what was embedded.

The shop is this module's own (the demo catalog rebuilt as `catalog-api-test`), so the shared `demo` shop other
tests search is never changed. The service reranks nothing (rerank_depth 0): it has no rollouts, so its admin port
exists for the catalog alone.
"""

from __future__ import annotations

import dataclasses
import json

import grpc
import pytest
import tritonclient.grpc as triton_grpc

from cli.main import main
from core._proto.shoprank.v1 import admin_pb2, admin_pb2_grpc, ranking_pb2, ranking_pb2_grpc
from core.specs import BI_ENCODER, MULTILINGUAL_ENCODER

from .conftest import ServiceThread, demo_catalog_in_milvus

pytestmark = pytest.mark.integration

SHOP = "catalog-api-test"
TOKEN = "catalog-api-test-token"
AUTH = (("authorization", f"Bearer {TOKEN}"),)


@pytest.fixture(scope="module")
def shop_in_milvus(triton, settings, milvus) -> str:
    """The demo catalog as this module's own shop in the session's Milvus server; its URL."""
    return demo_catalog_in_milvus(milvus.url, SHOP, triton, settings)


@pytest.fixture(scope="module")
def running(triton, settings, shop_in_milvus):
    service = ServiceThread(dataclasses.replace(settings, catalog_store=shop_in_milvus, shop=SHOP,
                                                triton_url=triton.url, admin_token=TOKEN, admin_port=0,
                                                rerank_depth=0))
    try:
        service.start()
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def admin(running):
    with grpc.insecure_channel(f"127.0.0.1:{running.service.admin_port}") as channel:
        yield admin_pb2_grpc.AdminStub(channel)


@pytest.fixture(scope="module")
def ranking(running):
    with grpc.insecure_channel(running.address) as channel:
        yield ranking_pb2_grpc.RankingStub(channel)


def product(product_id: str, title: str, **fields) -> admin_pb2.ProductRecord:
    return admin_pb2.ProductRecord(product_id=product_id, title=title, **fields)


def upsert(admin, *records: admin_pb2.ProductRecord, metadata=AUTH) -> admin_pb2.UpsertProductsResponse:
    return admin.UpsertProducts(iter(records), metadata=metadata, timeout=60)


def found(ranking, query: str, **request) -> list[str]:
    """The ids a search answers, retrieval only (no spelling correction: the made-up words are no catalog term)."""
    response = ranking.Search(ranking_pb2.SearchRequest(query=query, top_k=10, skip_spelling_correction=True,
                                                        skip_personalization=True, **request), timeout=60)
    return [item.product_id for item in response.items]


def inferences(triton) -> dict[str, int]:
    """How many inferences each encoder has run, over all its versions."""
    client = triton_grpc.InferenceServerClient(triton.url)
    return {spec.name: sum(stats.inference_count
                           for stats in client.get_inference_statistics(spec.name).model_stats)
            for spec in (BI_ENCODER, MULTILINGUAL_ENCODER)}


def test_a_new_product_is_found_right_after_its_acknowledgement_and_read_back(admin, ranking, triton):
    before = inferences(triton)
    answer = upsert(admin, product("api-1", "Quokkabrite camping lantern", brand="Lumio", category="Camping",
                                  price=34.5, stock=7, attributes={"colour": "green"}))
    assert (answer.received, answer.stored, answer.created, list(answer.errors)) == (1, 1, 1, [])
    assert all(inferences(triton)[name] > before[name] for name in before)  # embedded by both encoders
    assert found(ranking, "quokkabrite lantern")[0] == "api-1"
    stored = admin.GetProduct(admin_pb2.GetProductRequest(product_id="api-1"), metadata=AUTH)
    assert (stored.title, stored.brand, stored.price, stored.stock, dict(stored.attributes)) == (
        "Quokkabrite camping lantern", "Lumio", 34.5, 7, {"colour": "green"})


def test_a_price_change_is_seen_by_the_next_search_and_embeds_nothing(admin, ranking, triton):
    upsert(admin, product("api-2", "Platypusflex garden hose", price=20.0, stock=3))
    cheap = [ranking_pb2.Filter(field="price", max=15.0)]
    assert "api-2" not in found(ranking, "platypusflex hose", filters=cheap)
    before = inferences(triton)
    answer = upsert(admin, product("api-2", "Platypusflex garden hose", price=12.0, stock=3))
    assert (answer.fields_updated, answer.created, answer.reembedded) == (1, 0, 0)
    assert inferences(triton) == before  # nothing was embedded
    assert found(ranking, "platypusflex hose", filters=cheap)[0] == "api-2"
    assert admin.GetProduct(admin_pb2.GetProductRequest(product_id="api-2"), metadata=AUTH).price == 12.0
    before = inferences(triton)  # the search encoded its query
    again = upsert(admin, product("api-2", "Platypusflex garden hose", price=12.0, stock=3))
    assert (again.unchanged, again.fields_updated) == (1, 0) and inferences(triton) == before


def test_a_new_title_is_found_by_its_new_words_and_no_longer_by_the_old(admin, ranking, triton):
    upsert(admin, product("api-3", "Echidnor kettle, stainless steel", price=40.0))
    assert found(ranking, "echidnor kettle")[0] == "api-3"
    before = inferences(triton)
    answer = upsert(admin, product("api-3", "Numbatique kettle, stainless steel", price=40.0))
    assert answer.reembedded == 1
    assert inferences(triton)[BI_ENCODER.name] > before[BI_ENCODER.name]
    assert found(ranking, "numbatique kettle")[0] == "api-3"
    assert "api-3" not in found(ranking, "echidnor", retrieval=ranking_pb2.RETRIEVAL_MODE_LEXICAL)


def test_a_deleted_product_is_no_longer_found_or_read(admin, ranking):
    upsert(admin, product("api-4", "Wallabyne yoga mat"))
    assert found(ranking, "wallabyne yoga mat")[0] == "api-4"
    answer = admin.DeleteProducts(admin_pb2.DeleteProductsRequest(product_ids=["api-4", "never-was"]), metadata=AUTH)
    assert (answer.deleted, list(answer.not_found)) == (1, ["never-was"])
    assert "api-4" not in found(ranking, "wallabyne yoga mat")
    with pytest.raises(grpc.RpcError) as missing:
        admin.GetProduct(admin_pb2.GetProductRequest(product_id="api-4"), metadata=AUTH)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND and "api-4" in missing.value.details()


def test_bad_records_are_reported_by_their_index_and_the_others_kept(admin, ranking):
    answer = upsert(admin,
                    product("api-5", "Bilbyware salad bowl"),
                    product("api-6", "  "),
                    product("api-7", "Bilbyware serving spoon", stock=-2),
                    product("api-8", "Bilbyware cutting board", attributes={"price": "3"}),
                    product("", "Bilbyware nothing"),
                    product("api-9", "Bilbyware tea towel", stock=0))
    assert (answer.received, answer.stored, answer.created) == (6, 2, 2)
    assert [(error.index, error.product_id) for error in answer.errors] == [(1, "api-6"), (2, "api-7"), (3, "api-8"),
                                                                           (4, "")]
    assert "empty title" in answer.errors[0].message and "stock -2" in answer.errors[1].message
    assert "attribute 'price'" in answer.errors[2].message and "empty product_id" in answer.errors[3].message
    assert admin.GetProduct(admin_pb2.GetProductRequest(product_id="api-9"), metadata=AUTH).stock == 0
    assert "api-5" in found(ranking, "bilbyware salad bowl")


def test_the_admin_token_is_required_and_rollouts_are_off_without_a_reranker(admin):
    for metadata in ((("authorization", "Bearer wrong"),), ()):
        for call in (lambda: upsert(admin, product("api-x", "Never stored"), metadata=metadata),
                     lambda: admin.GetProduct(admin_pb2.GetProductRequest(product_id="api-1"), metadata=metadata)):
            with pytest.raises(grpc.RpcError) as refused:
                call()
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as missing:
        admin.GetProduct(admin_pb2.GetProductRequest(product_id="api-x"), metadata=AUTH)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as off:
        admin.GetRolloutStatus(admin_pb2.ModelRequest(), metadata=AUTH)
    assert off.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "no reranker" in off.value.details()


def test_the_cli_upserts_a_catalog_file_end_to_end(running, ranking, tmp_path, monkeypatch, capsys):
    path = tmp_path / "changes.csv"
    path.write_text("product_id,title,brand,price,stock,colour\n"
                    "api-10,Dingoroo trail running shoes,Pacer,89.0,5,blue\n"
                    "api-11,Dingoroo hiking socks,Pacer,cheap,2,\n"
                    "api-12,Dingoroo rain jacket,Pacer,120,0,\n", encoding="utf-8")
    address = f"127.0.0.1:{running.service.admin_port}"
    monkeypatch.setenv("SHOPRANK_ADMIN_TOKEN", TOKEN)
    assert main(["catalog", "upsert", str(path), "--admin", address]) == 2  # one row rejected, the rest stored
    out, err = capsys.readouterr()
    assert "2 products stored (2 new" in out and "1 rejected" in out
    assert "line 3: price 'cheap' of product 'api-11' is not a number" in err
    assert "api-10" in found(ranking, "dingoroo running shoes")
    assert main(["catalog", "get", "api-12", "--admin", address]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["title"], shown["price"], shown["stock"], shown["attributes"]) == ("Dingoroo rain jacket", 120.0,
                                                                                     0, {})
    assert main(["catalog", "delete", "api-10", "api-12", "--admin", address]) == 0
    assert "deleted 2 products" in capsys.readouterr().out
    assert main(["catalog", "get", "api-10", "--admin", address]) == 2
    assert capsys.readouterr().err.startswith("shoprank: error: NOT_FOUND")
