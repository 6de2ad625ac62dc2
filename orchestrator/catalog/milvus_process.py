"""Starting and stopping a Milvus Lite 2.5 server: the `milvus` binary shipped in the milvus-lite wheel, serving one
data directory over gRPC on a port of 127.0.0.1.

milvus_lite.server.Server is a thin Popen wrapper around that same binary (`milvus DB_FILE ADDRESS LOG_LEVEL`, with
the wheel's lib/ on LD_LIBRARY_PATH); it is not used because with a TCP address it cannot stop the server (it releases
a lock file the binary only watches in its Unix-socket mode, waits 2 s, then sends SIGKILL) and a `python -c` wrapper
would put a second process between us and the server. Launched directly, `kill -9` of `pid` is the server's death.
A lock file keeps a second LocalMilvus, in this process or another, off the same data directory (held across
`restart`).

On a production host Milvus standalone runs in its own containers (docker-compose.yml) and this module is not used.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from core.errors import ConfigError
from core.errors import CatalogUnavailable
from orchestrator.triton_process import free_port

DB_FILE = "milvus.db"  # the binary's SQLite file; milvus-lite allows names of [A-Za-z0-9.-_], at most 36 long
LOG_LEVEL = "ERROR"  # INFO logs every request's timings


def _wheel_lib() -> Path:
    # Found without importing milvus_lite, whose __init__ imports pkg_resources (and warns that it is deprecated).
    found = importlib.util.find_spec("milvus_lite")
    if found is None or not found.submodule_search_locations:
        raise ConfigError("milvus-lite is not installed: pass a Milvus URL or install shoprank's dependencies")
    lib = Path(list(found.submodule_search_locations)[0]) / "lib"
    if not (lib / "milvus").is_file():
        raise ConfigError(f"the milvus-lite wheel has no server binary at {lib / 'milvus'}")
    return lib


class LocalMilvus:
    """A Milvus Lite server child process keeping its data in `data_dir`, serving gRPC on 127.0.0.1:`port`.

    `start` after the process died (or `restart`) serves the same data directory on the same port, so clients
    holding the URL reconnect to it.
    """

    def __init__(self, data_dir: Path, port: int | None = None, log_path: Path | None = None,
                 start_timeout_s: float = 30.0) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()
        self.log_path = log_path or self.data_dir / "milvus.log"
        self.start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._lock: IO[str] | None = None

    @property
    def db_file(self) -> Path:
        return self.data_dir / DB_FILE

    @property
    def url(self) -> str:
        """What MilvusClient (and orchestrator.catalog.milvus) connects to."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def exit_code(self) -> int | None:
        """The exit code of a server that has stopped on its own or was killed (negative: the signal); None while
        it runs or before it started."""
        return None if self._process is None else self._process.poll()

    def start(self) -> "LocalMilvus":
        """Start the server and wait until it accepts connections; raise CatalogUnavailable with its log otherwise."""
        if self.running:
            raise ConfigError(f"Milvus Lite is already running on port {self.port}")
        lib = _wheel_lib()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(lib), env.get("LD_LIBRARY_PATH")]))
        command = [str(lib / "milvus"), str(self.db_file), f"127.0.0.1:{self.port}", LOG_LEVEL]
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                             cwd=self.data_dir, start_new_session=True)
        try:
            self._wait_started(self.start_timeout_s)
        except BaseException:  # also Ctrl-C: the server runs in its own session, so nothing else would stop it
            self.stop()
            raise
        return self

    def restart(self) -> "LocalMilvus":
        """Stop the server if it runs, then start it again on the same port and data directory."""
        self._terminate()
        return self.start()

    def _take_lock(self) -> None:
        if self._lock is not None:
            return  # held since the first start: a restart after a crash
        lock = open(self.data_dir / f".{DB_FILE}.lock", "a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # flock, not lockf: it holds within one process too
        except OSError:
            lock.close()
            raise ConfigError(f"{self.data_dir} is in use by another Milvus Lite server") from None
        self._lock = lock

    def _wait_started(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise CatalogUnavailable(f"Milvus Lite exited with code {self._process.returncode} while starting on "
                                         f"port {self.port} with {self.db_file}:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise CatalogUnavailable(f"Milvus Lite did not listen on port {self.port} within {timeout_s:.0f}s:\n"
                                 f"{self.log_tail()}")

    def log_tail(self, lines: int = 25) -> str:
        """The last lines the server wrote (its log level is ERROR, so these are its complaints)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])

    def _terminate(self) -> None:
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after a grace period) and release the data directory."""
        self._terminate()
        self._process = None
        if self._lock is not None:
            self._lock.close()  # closing drops the lock
            self._lock = None

    def __enter__(self) -> "LocalMilvus":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def milvus_endpoint(milvus_url: str, data_dir: Path, start_timeout_s: float = 30.0) -> Iterator[str]:
    """The given Milvus URL, or, when it is empty, the URL of a local Milvus Lite server on `data_dir` started for
    the block."""
    if milvus_url:
        yield milvus_url
        return
    with LocalMilvus(data_dir, start_timeout_s=start_timeout_s) as milvus:
        yield milvus.url
