"""Starting and stopping the real `tritonserver` binary shipped in the nvidia-pytriton wheel.

The wheel carries Triton 2.51 with its Python backend; the backend's stub must match this interpreter's
Python version, so each start lays out a backend directory with the right stub in a scratch folder.
On GPU hosts Triton runs in NVIDIA's container instead (docker-compose.yml) and this module is not used.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from core.errors import ConfigError, TritonUnavailable
from core.model_repository import versions

READY_LINE = "Started GRPCInferenceService"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _wheel_paths() -> tuple[Path, Path, Path]:
    try:
        import pytriton  # noqa: PLC0415 - only needed when a local server is started
    except ImportError:
        raise ConfigError("nvidia-pytriton is not installed: pass --triton-url or install shoprank's dependencies") from None
    root = Path(pytriton.__file__).parent / "tritonserver"
    libs = Path(pytriton.__file__).parent.parent / "nvidia_pytriton.libs"
    stub = root / "python_backend_stubs" / f"{sys.version_info.major}.{sys.version_info.minor}" / "triton_python_backend_stub"
    if not stub.is_file():
        raise ConfigError(f"nvidia-pytriton ships no Python backend stub for Python {sys.version_info[:2]}")
    return root, libs, stub


def unexported_models(model_repository: Path) -> list[str]:
    """The models of a repository (folders with a config.pbtxt) that have no version folder with files in it:
    what a fresh checkout holds before `shoprank export`."""
    missing = []
    for config in sorted(Path(model_repository).glob("*/config.pbtxt")):
        folder = config.parent
        if not any(any((folder / str(version)).iterdir()) for version in versions(folder)):
            missing.append(folder.name)
    return missing


class LocalTriton:
    """A tritonserver child process serving `model_repository` on a gRPC port of 127.0.0.1.

    It runs in explicit model-control mode: models and versions load and unload only through the repository API
    (orchestrator/rollout). With `load_all` (tools, benchmarks, index builds) every model's newest version is
    loaded at start; the orchestrator's Service starts it empty and loads the versions its rollout state names.
    """

    def __init__(self, model_repository: Path, grpc_port: int | None = None, log_path: Path | None = None,
                 start_timeout_s: float = 120.0, load_all: bool = True) -> None:
        self.model_repository = Path(model_repository).resolve()
        self.load_all = load_all
        self.start_timeout_s = start_timeout_s
        self.grpc_port = grpc_port or free_port()
        self.metrics_port = free_port()
        self._scratch = Path(tempfile.mkdtemp(prefix="shoprank-triton-"))
        self.log_path = log_path or self._scratch / "tritonserver.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def exit_code(self) -> int | None:
        """The exit code of a server that has stopped on its own (the process is reaped); None while it runs."""
        return None if self._process is None else self._process.poll()

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        """Triton's Prometheus metrics."""
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self) -> "LocalTriton":
        """Start the server and wait until it listens (with `load_all`, after loading every model); raise with its
        log otherwise."""
        timeout_s = self.start_timeout_s
        if not self.model_repository.is_dir():
            raise ConfigError(f"model repository {self.model_repository} not found; run `shoprank export` first")
        unexported = unexported_models(self.model_repository)
        if unexported:
            raise ConfigError(f"no exported version of {', '.join(unexported)} in {self.model_repository}: "
                              "run `shoprank export` (or `make export`) first")
        root, libs, stub = _wheel_paths()
        backends = self._scratch / "backends"
        shutil.rmtree(backends, ignore_errors=True)  # left by a server that died (a restart)
        shutil.copytree(root / "backends", backends)
        shutil.copy(stub, backends / "python" / "triton_python_backend_stub")
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(libs), env.get("LD_LIBRARY_PATH")]))
        # The Python backend's stub finds its packages (numpy, onnxruntime) through the interpreter on PATH.
        env["PATH"] = os.pathsep.join([str(Path(sys.prefix) / "bin"), env.get("PATH", "")])
        command = [
            str(root / "bin" / "tritonserver"),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backends}",
            f"--grpc-port={self.grpc_port}",
            "--grpc-address=127.0.0.1",
            "--allow-http=false",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            f"--metrics-port={self.metrics_port}",
            "--metrics-address=127.0.0.1",
            "--exit-timeout-secs=10",
            "--model-control-mode=explicit",
        ] + (["--load-model=*"] if self.load_all else [])
        log = open(self.log_path, "wb")
        self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        try:
            self._wait_started(timeout_s)
        except BaseException:  # also Ctrl-C: the server runs in its own session, so nothing else would stop it
            self.stop()
            raise
        return self

    def _wait_started(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise TritonUnavailable(f"tritonserver exited with code {self._process.returncode} while loading "
                                        f"{self.model_repository}:\n{self.log_tail()}")
            if READY_LINE in self.log_path.read_text(errors="replace"):
                return
            time.sleep(0.2)
        raise TritonUnavailable(f"tritonserver did not start within {timeout_s:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 25) -> str:
        """The last log lines, without Triton's ASCII tables."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        kept = [line for line in text.splitlines() if line.strip() and not line.startswith(("+", "|"))]
        return "\n".join(kept[-lines:])

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after a grace period) and remove its scratch folder."""
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
        self._process = None
        shutil.rmtree(self._scratch / "backends", ignore_errors=True)

    def __enter__(self) -> "LocalTriton":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def triton_endpoint(triton_url: str, model_repository: Path, start_timeout_s: float = 120.0) -> Iterator[str]:
    """The given Triton URL, or, when it is empty, the URL of a local tritonserver started for the block."""
    if triton_url:
        yield triton_url
        return
    with LocalTriton(model_repository, start_timeout_s=start_timeout_s) as triton:
        yield triton.url
