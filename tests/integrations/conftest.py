"""Shared fixtures for the adapter tests: models loaded once per session, sockets off, an event-loop ticker.

Contract tests use the tiny random BERT (fast; what the wrapped model receives is what they check); tests
that need meaningful rankings and the standard suites use the packaged MiniLM and are marked ``slow``.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")


@functools.cache
def shared_model(path: str) -> Any:  # -> AutoModelForEmbedding
    """Load an embedder on the CPU once per test session (a cache for tests only, keyed by path)."""
    from retrievals_rag.models.embedding import AutoModelForEmbedding

    return AutoModelForEmbedding.from_pretrained(path, device="cpu")


def shared_minilm() -> Any:  # -> AutoModelForEmbedding
    """The packaged all-MiniLM-L6-v2, loaded once; usable in the standard suites' properties."""
    from retrievals_rag.models.loading import default_embedding_model_path

    return shared_model(str(default_embedding_model_path()))


@pytest.fixture(scope="session")
def minilm_model() -> Any:
    return shared_minilm()


@pytest.fixture(scope="session")
def tiny_model(tiny_bert_path: Path) -> Any:
    return shared_model(str(tiny_bert_path))


@pytest.fixture(autouse=True)
def _no_network() -> Iterator[None]:
    """No test here may open a network socket (unix sockets stay allowed: the event loop needs one)."""
    import pytest_socket

    pytest_socket.disable_socket(allow_unix_socket=True)
    try:
        yield
    finally:
        pytest_socket.enable_socket()


async def run_with_ticker(awaitable: Awaitable[T], interval: float = 0.005) -> tuple[T, int]:
    """Await ``awaitable`` while a concurrent task counts ticks; few ticks mean the event loop was blocked."""
    ticks = 0
    done = asyncio.Event()

    async def tick() -> None:
        nonlocal ticks
        while not done.is_set():
            await asyncio.sleep(interval)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        result = await awaitable
    finally:
        done.set()
        await ticker
    return result, ticks


def slowed(function: Callable[..., T], seconds: float = 0.3) -> Callable[..., T]:
    """``function`` made slower by a blocking sleep, as a long encode would be."""

    @functools.wraps(function)
    def slow(*args: Any, **kwargs: Any) -> T:
        time.sleep(seconds)
        return function(*args, **kwargs)

    return slow
