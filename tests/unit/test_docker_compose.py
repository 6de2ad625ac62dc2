"""docker-compose.yml (the GPU deployment) cannot run here (no Docker engine, no `docker compose`); check its
structure against the repository: Triton, Milvus standalone with etcd and MinIO, Redis, the index job and two
orchestrator replicas sharing them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

from cli.main import build_parser
from core.catalog import SHOP_NAME
from core.settings import Settings
from core.specs import BI_ENCODER, MULTILINGUAL_ENCODER

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"  # Triton 2.51, as in the nvidia-pytriton wheel
MILVUS_IMAGE = re.compile(r"milvusdb/milvus:v2\.5\.\d+")  # the server pymilvus 2.5 and Milvus Lite 2.5 match
MILVUS = "milvus-standalone"
INDEX_JOB = "catalog-index"
# `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?message}`, `${NAME?message}`.
INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<rest>[^}]*))?\}")
SECRET_NAME = re.compile(r"TOKEN|PASSWORD|SECRET|ACCESS_KEY|ROOT_USER", re.IGNORECASE)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def replicas(services) -> dict[str, dict]:
    """The orchestrator services: those that publish the public gRPC port 50051."""
    return {name: service for name, service in services.items()
            if any(container == "50051" for _, _, container in _ports(service))}


def _mounts(service: dict) -> dict[str, str]:
    """container path -> host path (or named volume) of a service's short-syntax volumes."""
    mounts = {}
    for volume in service.get("volumes", []):
        host, container, *_ = volume.split(":")
        mounts[container] = host
    return mounts


def _ports(service: dict) -> list[tuple[str, str, str]]:
    """(host address, host port, container port) of each short-syntax port; the address is "" when unbound."""
    published = []
    for port in service.get("ports", []):
        parts = str(port).split(":")
        address = parts[0] if len(parts) == 3 else ""
        published.append((address, parts[-2], parts[-1]))
    return published


def _command(service: dict) -> list[str]:
    command = service["command"]
    return command if isinstance(command, list) else command.split()


def _healthcheck(service: dict) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else test


def _host_port(address: str) -> tuple[str, str]:
    """("milvus-standalone", "19530") of "milvus://milvus-standalone:19530/0" or "etcd:2379"."""
    host, _, port = address.split("://")[-1].partition(":")
    return host, port.split("/")[0]


def test_the_services(services, replicas):
    assert {"triton", "etcd", "minio", MILVUS, "redis", INDEX_JOB} <= set(services)
    assert len(replicas) == 2


def test_triton_image_and_command(services):
    triton = services["triton"]
    assert triton["image"] == TRITON_IMAGE
    command = " ".join(_command(triton))
    assert command.startswith("tritonserver")
    assert "--model-repository=/models" in command
    assert "--model-control-mode=explicit" in command  # the orchestrator loads the versions it serves


def test_triton_loads_both_encoders_for_the_index_job(services):
    # The index job runs before any orchestrator could load them, and waits for both to be ready.
    command = _command(services["triton"])
    for spec in (BI_ENCODER, MULTILINGUAL_ENCODER):
        assert f"--load-model={spec.name}" in command


def test_model_repository_mount_is_the_gpu_target(services):
    host = _mounts(services["triton"])["/models"]
    assert host == "./model_repository/gpu"
    assert (ROOT / host / "bi_encoder" / "config.pbtxt").is_file()
    assert 'platform: "onnxruntime_onnx"' in (ROOT / host / "bi_encoder" / "config.pbtxt").read_text()


def test_gpu_reservation(services):
    devices = services["triton"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and d["count"] == 1 and "gpu" in d["capabilities"] for d in devices)


def test_triton_grpc_port_and_health(services):
    triton = services["triton"]
    assert any(container == "8001" for _, _, container in _ports(triton))
    # Live, not ready: the reranker is loaded only when an orchestrator asks (explicit model control).
    assert "/v2/health/live" in _healthcheck(triton)


def test_milvus_standalone_on_etcd_and_minio(services, compose):
    milvus = services[MILVUS]
    assert MILVUS_IMAGE.fullmatch(milvus["image"]), milvus["image"]
    assert _command(milvus) == ["milvus", "run", "standalone"]
    environment = milvus["environment"]
    etcd_host, etcd_port = _host_port(environment["ETCD_ENDPOINTS"])
    assert etcd_host == "etcd" and f"http://0.0.0.0:{etcd_port}" in _command(services["etcd"])
    assert _host_port(environment["MINIO_ADDRESS"]) == ("minio", "9000")
    for dependency in ("etcd", "minio"):
        assert milvus["depends_on"][dependency]["condition"] == "service_healthy"
    assert "localhost:9091/healthz" in _healthcheck(milvus)
    assert milvus["healthcheck"]["start_period"]  # Milvus takes a while to start
    # Each keeps its data in a named volume, declared at the top level.
    for name, data in ((MILVUS, "/var/lib/milvus"), ("etcd", "/etcd"), ("minio", "/minio_data")):
        assert _mounts(services[name])[data] in compose["volumes"]


def test_etcd_and_minio_images_and_health(services):
    etcd, minio = services["etcd"], services["minio"]
    assert etcd["image"].startswith("quay.io/coreos/etcd:v3.5.")
    assert "etcdctl endpoint health" in _healthcheck(etcd)
    assert minio["image"].startswith("minio/minio:RELEASE.")
    assert "localhost:9000/minio/health/live" in _healthcheck(minio)
    command = _command(minio)
    assert command[:2] == ["minio", "server"] and command[2] in _mounts(minio)  # serves its volume


def test_milvus_uses_minios_own_credentials(services):
    # Milvus reads MINIO_ACCESS_KEY_ID and MINIO_SECRET_ACCESS_KEY; both must be MinIO's root user, from the
    # same variables, or Milvus cannot reach its object store.
    milvus, minio = services[MILVUS]["environment"], services["minio"]["environment"]
    assert milvus["MINIO_ACCESS_KEY_ID"] == minio["MINIO_ROOT_USER"]
    assert milvus["MINIO_SECRET_ACCESS_KEY"] == minio["MINIO_ROOT_PASSWORD"]


def test_redis_is_durable_and_checked(services):
    redis = services["redis"]
    command = " ".join(_command(redis))
    # The Redis profile store refuses to start otherwise: an acknowledged event must survive a crash.
    assert "--appendonly yes" in command and "--appendfsync always" in command
    assert "redis-cli ping" in _healthcheck(redis)
    assert _mounts(redis)["/data"]


def test_replicas_share_one_milvus_and_one_redis(services, replicas):
    environments = [replica["environment"] for replica in replicas.values()]
    for name in ("SHOPRANK_CATALOG_STORE", "SHOPRANK_SHOP", "SHOPRANK_PROFILE_STORE", "SHOPRANK_TRITON_URL"):
        assert len({environment[name] for environment in environments}) == 1, name
    environment = environments[0]
    assert environment["SHOPRANK_CATALOG_STORE"] == f"milvus://{MILVUS}:19530"
    assert SHOP_NAME.fullmatch(environment["SHOPRANK_SHOP"])  # a catalog in Milvus is a shop's
    store = environment["SHOPRANK_PROFILE_STORE"]
    assert store.startswith("redis://") and _host_port(store) == ("redis", "6379")


def test_replica_settings_are_valid(replicas):
    for name, replica in replicas.items():
        environment = replica["environment"]
        fields = {f"SHOPRANK_{field.upper()}" for field in Settings.__dataclass_fields__}
        assert set(environment) <= fields, f"{name}: {sorted(set(environment) - fields)} name no setting"
        settings = Settings.from_env({key: value for key, value in environment.items() if "${" not in value})
        assert settings.catalog_store and settings.shop


def test_replicas_wait_on_their_stores_and_the_index_job(replicas):
    for name, replica in replicas.items():
        conditions = {dependency: spec["condition"] for dependency, spec in replica["depends_on"].items()}
        assert conditions == {"triton": "service_healthy", MILVUS: "service_healthy", "redis": "service_healthy",
                              INDEX_JOB: "service_completed_successfully"}, name


def test_index_job_fills_the_replicas_milvus_with_the_demo_catalog(services, replicas):
    job = services[INDEX_JOB]
    command = _command(job)
    assert command[0] == "shoprank"
    args = build_parser().parse_args(command[1:])  # the options exist and parse
    assert args.command == "index"
    environment = next(iter(replicas.values()))["environment"]
    assert args.catalog_store == environment["SHOPRANK_CATALOG_STORE"]
    assert args.shop == environment["SHOPRANK_SHOP"] == "demo"
    assert args.triton_url == environment["SHOPRANK_TRITON_URL"] == "triton:8001"
    assert args.catalog == "data/demo/catalog.csv" and (ROOT / args.catalog).is_file()
    assert job["environment"]["SHOPRANK_MODEL_REPOSITORY"] == "/models"  # the encoders' tokenizers
    assert _mounts(job)["/models"] == "./model_repository/gpu"
    assert {dependency: spec["condition"] for dependency, spec in job["depends_on"].items()} == {
        "triton": "service_healthy", MILVUS: "service_healthy"}
    assert job.get("restart", "no") == "no"  # one shot: the replicas wait for it to complete


def test_orchestrators_reach_triton_by_service_name(services, replicas):
    for replica in replicas.values():
        host, port = _host_port(replica["environment"]["SHOPRANK_TRITON_URL"])
        assert host == "triton" and host in services
        assert port == "8001"
        assert _mounts(replica)["/models"] == "./model_repository/gpu"


def test_replicas_publish_distinct_host_ports(services, replicas):
    public = [host for replica in replicas.values() for address, host, container in _ports(replica)
              if container == "50051"]
    assert len(public) == len(replicas) == len(set(public))
    every = [(address, host) for service in services.values() for address, host, _ in _ports(service)]
    assert len(every) == len(set(every))


def test_orchestrators_keep_their_rollout_state_and_serve_admin_locally(replicas):
    states = set()
    for replica in replicas.values():
        environment = replica["environment"]
        state = str(Path(environment["SHOPRANK_ROLLOUT_STATE"]).parent)
        assert state in _mounts(replica)
        assert not _mounts(replica)[state].endswith(":ro")
        states.add(_mounts(replica)[state])
        admin = environment["SHOPRANK_ADMIN_PORT"]
        admin_ports = [address for address, _, container in _ports(replica) if container == admin]
        assert admin_ports == ["127.0.0.1"]
    assert len(states) == len(replicas)  # one state file per process


def test_no_secret_is_written_in_the_file(services):
    text = COMPOSE.read_text()
    assert "minioadmin" not in text.lower()  # MinIO's and Milvus's default credentials
    for name, service in services.items():
        for variable, value in (service.get("environment") or {}).items():
            if not SECRET_NAME.search(variable):
                continue
            match = INTERPOLATION.fullmatch(str(value))
            assert match, f"{name}: {variable} is written in the file, not taken from the environment"
            # A default would be a secret written here; a required variable's message is not.
            assert match["op"] in (None, ":?", "?") or not match["rest"], f"{name}: {variable} has a default"


def test_images_are_built_from_the_dockerfile(services, replicas):
    for name in (*replicas, INDEX_JOB):
        build = services[name]["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = ROOT / context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
        assert dockerfile.is_file()
    text = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text
    assert "triton:8001" in text


def test_dockerfile_copies_every_package_before_installing():
    text = (ROOT / "Dockerfile").read_text()
    install = text.index("RUN pip install .")
    copied = set(re.findall(r"^COPY (\w+)/ ", text[:install], re.MULTILINE))
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {pattern.rstrip("*") for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages <= copied, f"not copied before `pip install .`: {sorted(packages - copied)}"
    assert re.search(r"^COPY data/ data/", text, re.MULTILINE)  # the index job's demo catalog
