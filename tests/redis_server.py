"""A real redis-server for tests and benchmarks: a free port, a temporary directory, every write fsynced to the AOF.

    with RedisServer() as server:        # server.url, server.process, server.dir
        ...
        server.restart()                 # kill -9 and start again on the same port and directory
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

STARTUP_DEADLINE_S = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """A redis-server started on entry and killed on exit, its directory removed."""

    def __init__(self, appendonly: bool = True) -> None:
        self.appendonly = appendonly
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = Path(tempfile.mkdtemp(prefix="shoprank-redis-"))
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> RedisServer:
        try:
            self.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.kill()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def start(self) -> None:
        """Start redis-server and wait until it answers PING (its AOF loaded)."""
        # --save "": no RDB snapshots, so what survives a crash is what the AOF holds.
        command = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.dir),
                   "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always", "--save", "",
                   "--logfile", "redis.log"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STARTUP_DEADLINE_S
        while not self._answers_ping():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                log = self.dir / "redis.log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"redis-server on port {self.port} did not answer PING:\n{tail}")
            time.sleep(0.02)

    def kill(self) -> None:
        """Kill -9 the server (no shutdown save: only what is already in the AOF survives)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        """Kill -9 the server if it runs, and start it again on the same port and directory."""
        self.kill()
        self.start()

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(64).startswith(b"+PONG")  # "-LOADING" while the AOF loads
        except OSError:
            return False
