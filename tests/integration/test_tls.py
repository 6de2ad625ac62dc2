"""TLS, mutual TLS, the public token and the rate limit on a real service (real Triton, real gRPC servers), with a
throwaway CA, server and client certificates made by the `openssl` command line for this module.

The admin API's refusal of its token over plaintext from another host needs a peer that is not loopback. No other
host takes part here; a call to this machine's own network address (where it has one: the tests skip otherwise)
comes from that address, which the service cannot tell from another host's, so the refusal is shown on it.
tests/unit/orchestrator/test_security.py shows the interceptor's decision on the peer strings gRPC gives for other
hosts, IPv6 included. The plaintext admin API from loopback is used as before by test_rollout.py and
test_catalog_api.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import socket
import subprocess
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cli.main import main
from core._proto.shoprank.v1 import admin_pb2, admin_pb2_grpc, ranking_pb2, ranking_pb2_grpc
from core.errors import ConfigError
from orchestrator.harness import scratch_state
from orchestrator.server import Service

from .conftest import ServiceThread

pytestmark = pytest.mark.integration

API_TOKEN = "tls-test-api-token"
ADMIN_TOKEN = "tls-test-admin-token"
SEARCH = ranking_pb2.SearchRequest(query="cordless drill", top_k=3)
RATE = 0.2  # the mutual-TLS service's rate limit: a call every 5 s after a burst of
BURST = 3


def openssl(directory: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)


def issue(directory: Path, name: str, extensions: str = "", signed: bool = True) -> None:
    """NAME.key and NAME.pem in `directory`: a P-256 key and its certificate (subject CN=NAME, valid a day), signed by
    the CA there (ca.pem, ca.key), else by itself."""
    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f"{name}.key",
           "-subj", f"/O=shoprank tests/CN={name}")
    if not signed:
        openssl(directory, "req", "-x509", *key, "-out", f"{name}.pem", "-days", "1")
        return
    openssl(directory, "req", *key, "-out", f"{name}.csr")
    (directory / f"{name}.ext").write_text(extensions)
    openssl(directory, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext")


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A CA; the server's certificate for 127.0.0.1 and localhost; two clients' (client, limited) signed by the CA,
    and a stranger's signed by itself."""
    directory = tmp_path_factory.mktemp("pki")
    issue(directory, "ca", signed=False)
    issue(directory, "server", "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    for name in ("client", "limited"):
        issue(directory, name, "extendedKeyUsage=clientAuth\n")
    issue(directory, "stranger", signed=False)
    return directory


def credentials(pki: Path, client: str | None = None, trust: bool = True) -> grpc.ChannelCredentials:
    """A TLS client's credentials: the test CA trusted (else the system's CAs), and the certificate of `client`."""
    pair = ((pki / f"{client}.key").read_bytes(), (pki / f"{client}.pem").read_bytes()) if client else (None, None)
    return grpc.ssl_channel_credentials((pki / "ca.pem").read_bytes() if trust else None, *pair)


def start(settings, triton, demo_index, root: Path, **changes) -> ServiceThread:
    """A service with its own state files under `root`, the admin API on a free port, no cross-encoder (quick)."""
    return ServiceThread(dataclasses.replace(
        settings, index_dir=demo_index, triton_url=triton.url, port=0, admin_port=0, admin_token=ADMIN_TOKEN,
        rerank_depth=0, **scratch_state(root), **changes)).start()


@pytest.fixture(scope="module")
def tls_service(settings, triton, demo_index, pki, tmp_path_factory):
    """TLS on both ports (a server certificate only) and the public API's token."""
    running = start(settings, triton, demo_index, tmp_path_factory.mktemp("tls"), tls_cert=pki / "server.pem",
                    tls_key=pki / "server.key", api_token=API_TOKEN)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def mtls_service(settings, triton, demo_index, pki, tmp_path_factory):
    """Mutual TLS on both ports, and a rate limit per client certificate."""
    running = start(settings, triton, demo_index, tmp_path_factory.mktemp("mtls"), tls_cert=pki / "server.pem",
                    tls_key=pki / "server.key", tls_client_ca=pki / "ca.pem", rate_limit_rps=RATE,
                    rate_limit_burst=BURST)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def network_address() -> str:
    """This machine's IPv4 address on its network (the source of a route; a UDP socket sends nothing to learn it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("203.0.113.1", 9))  # TEST-NET-3: any routed address does
        except OSError:
            pytest.skip("this machine has no IPv4 network address")
        address = probe.getsockname()[0]
    if ipaddress.ip_address(address).is_loopback or address == "0.0.0.0":
        pytest.skip("this machine has no IPv4 address besides loopback")
    return address


def refusal(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as refused:
        call(*args, timeout=10, **kwargs)
    return refused.value


def test_a_search_over_tls_trusts_the_service_by_its_ca_and_plaintext_is_turned_away(tls_service, pki):
    token = (("authorization", f"Bearer {API_TOKEN}"),)
    with grpc.secure_channel(tls_service.address, credentials(pki)) as channel:
        assert ranking_pb2_grpc.RankingStub(channel).Search(SEARCH, metadata=token, timeout=60).items
    with grpc.insecure_channel(tls_service.address) as channel:
        error = refusal(ranking_pb2_grpc.RankingStub(channel).Search, SEARCH, metadata=token)
        assert error.code() == grpc.StatusCode.UNAVAILABLE
    with grpc.secure_channel(tls_service.address, credentials(pki, trust=False)) as channel:  # the system's CAs
        error = refusal(ranking_pb2_grpc.RankingStub(channel).Search, SEARCH, metadata=token)
        assert error.code() == grpc.StatusCode.UNAVAILABLE


def test_the_public_token_is_required_when_set_and_health_checks_need_none(tls_service, pki):
    with grpc.secure_channel(tls_service.address, credentials(pki)) as channel:
        stub = ranking_pb2_grpc.RankingStub(channel)
        for metadata in ((), (("authorization", "Bearer wrong"),)):
            error = refusal(stub.Search, SEARCH, metadata=metadata)
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED and "SHOPRANK_API_TOKEN" in error.details()
        error = refusal(stub.FeedbackStream, iter([ranking_pb2.FeedbackEvent(event_id="e", user_id="u")]))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        error = refusal(stub.ForgetUser, ranking_pb2.ForgetUserRequest(user_id="u"))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_the_admin_api_speaks_tls_and_takes_its_token(tls_service, pki):
    address = f"127.0.0.1:{tls_service.service.admin_port}"
    with grpc.secure_channel(address, credentials(pki)) as channel:
        stub = admin_pb2_grpc.AdminStub(channel)
        answer = stub.GetExperimentStatus(admin_pb2.ExperimentRequest(),
                                          metadata=(("authorization", f"Bearer {ADMIN_TOKEN}"),), timeout=10)
        assert list(answer.experiments) == []
        error = refusal(stub.GetExperimentStatus, admin_pb2.ExperimentRequest(),
                        metadata=(("authorization", f"Bearer {API_TOKEN}"),))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    with grpc.insecure_channel(address) as channel:
        error = refusal(admin_pb2_grpc.AdminStub(channel).GetExperimentStatus, admin_pb2.ExperimentRequest(),
                        metadata=(("authorization", f"Bearer {ADMIN_TOKEN}"),))
        assert error.code() == grpc.StatusCode.UNAVAILABLE


def test_the_cli_reaches_a_tls_service_with_its_ca_and_tokens(tls_service, pki, monkeypatch, capsys):
    ca = str(pki / "ca.pem")
    assert main(["search", "cordless drill", "--server", tls_service.address, "--tls-ca", ca,
                 "--api-token", API_TOKEN]) == 0
    assert "query 'cordless drill': 10 items" in capsys.readouterr().out
    monkeypatch.setenv("SHOPRANK_API_TOKEN", API_TOKEN)
    assert main(["search", "drill", "--server", tls_service.address, "--tls-ca", ca, "--top-k", "2"]) == 0
    assert "2 items" in capsys.readouterr().out
    assert main(["search", "drill", "--server", tls_service.address]) == 2  # plaintext
    assert "UNAVAILABLE" in capsys.readouterr().err
    assert main(["search", "drill", "--server", tls_service.address, "--tls-ca", str(pki / "missing.pem")]) == 2
    assert f"--tls-ca {pki / 'missing.pem'} cannot be read" in capsys.readouterr().err
    monkeypatch.setenv("SHOPRANK_ADMIN_TOKEN", ADMIN_TOKEN)
    admin = f"127.0.0.1:{tls_service.service.admin_port}"
    assert main(["experiment", "status", "--admin", admin, "--tls-ca", ca]) == 0
    assert capsys.readouterr().out.strip() == "no experiments"


def test_mutual_tls_takes_only_clients_with_a_certificate_its_ca_signed(mtls_service, pki):
    for refused in (credentials(pki), credentials(pki, "stranger")):
        with grpc.secure_channel(mtls_service.address, refused) as channel:
            error = refusal(ranking_pb2_grpc.RankingStub(channel).Search, SEARCH)
            assert error.code() == grpc.StatusCode.UNAVAILABLE
    with grpc.secure_channel(mtls_service.address, credentials(pki, "client")) as channel:
        assert ranking_pb2_grpc.RankingStub(channel).Search(SEARCH, timeout=60).items
    with grpc.secure_channel(f"127.0.0.1:{mtls_service.service.admin_port}", credentials(pki, "client")) as channel:
        answer = admin_pb2_grpc.AdminStub(channel).GetExperimentStatus(
            admin_pb2.ExperimentRequest(), metadata=(("authorization", f"Bearer {ADMIN_TOKEN}"),), timeout=10)
        assert list(answer.experiments) == []


def test_past_its_burst_a_client_certificate_is_refused_with_retry_after_ms_and_others_go_on(mtls_service, pki):
    async def burst() -> list[tuple[grpc.StatusCode, str, str]]:
        async with grpc.aio.secure_channel(mtls_service.address, credentials(pki, "limited")) as channel:
            stub = ranking_pb2_grpc.RankingStub(channel)
            outcomes = []
            for _ in range(BURST + 2):
                call = stub.Search(SEARCH, timeout=60)
                try:
                    await call
                except grpc.RpcError:
                    pass
                hint = dict(await call.trailing_metadata() or ()).get("retry-after-ms", "")
                outcomes.append((await call.code(), await call.details(), hint))
            return outcomes

    outcomes = asyncio.run(burst())
    assert [code for code, _, _ in outcomes] == [grpc.StatusCode.OK] * BURST + [grpc.StatusCode.RESOURCE_EXHAUSTED] * 2
    for _, details, hint in outcomes[BURST:]:
        assert details.startswith("rate limit: this client (subject ") and "CN=limited" in details
        assert 0 < int(hint) <= 1000 / RATE
    assert mtls_service.service.gate.refused["search"] == 0  # the rate limit refused them, not admission control
    with grpc.secure_channel(mtls_service.address, credentials(pki, "client")) as channel:  # another identity
        assert ranking_pb2_grpc.RankingStub(channel).Search(SEARCH, timeout=60).items
    with grpc.secure_channel(mtls_service.address, credentials(pki, "limited")) as channel:  # health: never limited
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_a_bad_certificate_file_stops_the_service_at_start_naming_the_file(settings, pki, tmp_path):
    junk, missing = tmp_path / "junk.pem", tmp_path / "missing.pem"
    junk.write_text("not a certificate\n")
    server = {"tls_cert": pki / "server.pem", "tls_key": pki / "server.key"}
    cases = [
        ({**server, "tls_cert": missing}, f"tls_cert {missing} cannot be read: No such file or directory"),
        ({**server, "tls_key": pki / "client.key"}, f"tls_key {pki / 'client.key'} is not the key of tls_cert"),
        ({**server, "tls_key": junk}, f"tls_key {junk} holds no PEM private key"),
        ({**server, "tls_client_ca": junk}, f"tls_client_ca {junk} holds no PEM certificate"),
    ]
    for files, message in cases:
        with pytest.raises(ConfigError) as failed:  # before the service opens its catalog or reaches Triton
            asyncio.run(Service(dataclasses.replace(settings, **files)).start())
        assert str(failed.value).startswith(message), failed.value


def test_over_plaintext_the_admin_api_refuses_a_peer_off_loopback_and_over_tls_takes_it(
        settings, triton, demo_index, pki, network_address, tmp_path, caplog):
    auth = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
    # Bound to the network address (the public API closed by a token): calls to it come from that address.
    with caplog.at_level(logging.WARNING, logger="orchestrator.server"):
        running = start(settings, triton, demo_index, tmp_path / "plaintext", host=network_address, api_token=API_TOKEN)
    try:
        assert any("admin API" in record.message and "plaintext" in record.message for record in caplog.records)
        with grpc.insecure_channel(f"{network_address}:{running.service.admin_port}") as channel:
            error = refusal(admin_pb2_grpc.AdminStub(channel).GetExperimentStatus, admin_pb2.ExperimentRequest(),
                            metadata=auth)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "use TLS" in error.details() and f"ipv4:{network_address}:" in error.details()
    finally:
        running.stop()
    running = start(settings, triton, demo_index, tmp_path / "tls", host=network_address, api_token=API_TOKEN,
                    tls_cert=pki / "server.pem", tls_key=pki / "server.key")
    try:
        # The test certificate names 127.0.0.1 and localhost: the client checks it against localhost.
        with grpc.secure_channel(f"{network_address}:{running.service.admin_port}", credentials(pki),
                                 options=(("grpc.ssl_target_name_override", "localhost"),)) as channel:
            answer = admin_pb2_grpc.AdminStub(channel).GetExperimentStatus(admin_pb2.ExperimentRequest(),
                                                                          metadata=auth, timeout=10)
        assert list(answer.experiments) == []
    finally:
        running.stop()
