"""Serve an ASGI app with uvicorn in a background thread, on loopback.

Used by the ``demo`` and ``serve`` commands and by tests that need a real
HTTP peer: the app listens on a real socket and is stopped cleanly.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import attrs
import uvicorn

__all__ = ["RunningServer", "free_port", "serve_in_thread"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@attrs.define
class RunningServer:
    """A uvicorn server running in a thread; ``url`` has no trailing slash."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve_in_thread(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    startup_timeout: float = 15.0,
) -> RunningServer:
    """Start ``app`` on ``host``; return once it accepts connections."""
    port = port or free_port(host)
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn:{port}", daemon=True)
    thread.start()

    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the server on {host}:{port} failed to start")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise TimeoutError(f"the server on {host}:{port} did not start in time")
        time.sleep(0.01)
    return RunningServer(url=f"http://{host}:{port}", server=server, thread=thread)
