"""docker-compose.yml (the GPU deployment) cannot run here; check its structure against the repository."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"  # Triton 2.51, as in the nvidia-pytriton wheel


@pytest.fixture(scope="module")
def services() -> dict:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return compose["services"]


def _mounts(service: dict) -> dict[str, str]:
    """container path -> host path of a service's short-syntax volumes."""
    mounts = {}
    for volume in service.get("volumes", []):
        host, container, *_ = volume.split(":")
        mounts[container] = host
    return mounts


def test_both_services(services):
    assert {"triton", "orchestrator"} <= set(services)


def test_triton_image_and_command(services):
    triton = services["triton"]
    assert triton["image"] == TRITON_IMAGE
    command = " ".join(triton["command"]) if isinstance(triton["command"], list) else triton["command"]
    assert command.startswith("tritonserver")
    assert "--model-repository=/models" in command
    assert "--model-control-mode=explicit" in command  # the orchestrator loads the versions it serves


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
    assert any(str(port).split(":")[-1] == "8001" for port in triton["ports"])
    # Live, not ready: nothing is loaded until the orchestrator asks (explicit model control).
    assert "/v2/health/live" in " ".join(triton["healthcheck"]["test"])


def test_orchestrator_reaches_triton_by_service_name(services):
    orchestrator = services["orchestrator"]
    host, _, port = orchestrator["environment"]["SHOPRANK_TRITON_URL"].partition(":")
    assert host == "triton" and host in services
    assert port == "8001"
    assert orchestrator["depends_on"]["triton"]["condition"] == "service_healthy"
    assert _mounts(orchestrator)["/index"] == "./.shoprank/index"
    assert any(str(port).split(":")[-1] == "50051" for port in orchestrator["ports"])


def test_orchestrator_keeps_its_rollout_state_and_serves_admin_locally(services):
    orchestrator = services["orchestrator"]
    state = orchestrator["environment"]["SHOPRANK_ROLLOUT_STATE"]
    assert str(Path(state).parent) in _mounts(orchestrator)
    assert not _mounts(orchestrator)[str(Path(state).parent)].endswith(":ro")
    admin = orchestrator["environment"]["SHOPRANK_ADMIN_PORT"]
    assert any(str(port).startswith("127.0.0.1:") and str(port).endswith(f":{admin}") for port in orchestrator["ports"])


def test_orchestrator_image_is_built_from_the_dockerfile(services):
    build = services["orchestrator"]["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    dockerfile = ROOT / context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
    assert dockerfile.is_file()
    text = dockerfile.read_text()
    assert "FROM python:3.11-slim" in text
    assert "triton:8001" in text
