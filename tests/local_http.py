"""Local HTTP servers for tests of network clients, and a guard that lets tests reach 127.0.0.1 only."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOOPBACK = "127.0.0.1"


@contextmanager
def loopback_only() -> Iterator[None]:
    """Connections to anything but 127.0.0.1 fail inside the block (pytest-socket)."""
    import pytest_socket

    original_connect = socket.socket.connect
    pytest_socket.socket_allow_hosts([LOOPBACK], allow_unix_socket=True)
    try:
        yield
    finally:
        socket.socket.connect = original_connect  # type: ignore[method-assign]


@contextmanager
def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on a free loopback port in a thread; yields the server's root URL."""
    server = ThreadingHTTPServer((LOOPBACK, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
