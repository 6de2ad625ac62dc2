"""Serving the workbench with uvicorn: in the foreground (`shoprank workbench`) or in a thread on a free port (the
integration test, `make workbench-check`)."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from .app import create_app
from .config import WorkbenchConfig


def serve(config: WorkbenchConfig) -> None:
    """Serve the workbench until interrupted."""
    app = create_app(config)  # reads the catalogs first: a bad one is an error before anything listens
    print(f"shoprank workbench on http://{config.host}:{config.port}/ for {', '.join(config.servers)}", flush=True)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning")


class WorkbenchThread:
    """The workbench served by uvicorn in a background thread, on a port bound before it starts (the config's port,
    0: a free one); a context manager that stops it at the end."""

    def __init__(self, config: WorkbenchConfig, start_timeout_s: float = 30.0) -> None:
        self.config = config
        self.start_timeout_s = start_timeout_s
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((config.host, config.port))
        self.port = self._socket.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(create_app(config), log_level="warning", lifespan="on"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True,
                                        name="workbench")

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    def __enter__(self) -> "WorkbenchThread":
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the workbench did not start on {self.url}")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._socket.close()
