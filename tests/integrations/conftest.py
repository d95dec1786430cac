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


# ---------------------------------------------------------------------------- rankers (reranker adapters)
# No trained reranker exists here: the tiny random models below score randomly but deterministically, so the
# reranker tests compare the adapters' order with the model's own compute_score, never with semantics.


# The tiny Llama's word vocabulary has no "Yes" (the LLM ranker's default answer token): "relevant" stands in.
# AutoModelForRanking.from_pretrained(path, causal_lm=True) takes no target_token, so LLMRanker loads it.
LLM_TARGET_TOKEN = "relevant"


@pytest.fixture(scope="session")
def cross_encoder_path(tmp_path_factory: pytest.TempPathFactory, tiny_bert_path: Path) -> Path:
    """A cross-encoder folder (model_kind "cross_encoder"): the tiny BERT with a fresh classification head."""
    import warnings

    from retrievals_rag.models.ranking import AutoModelForRanking

    path = tmp_path_factory.mktemp("tiny-cross-encoder")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fresh head
        AutoModelForRanking.from_pretrained(tiny_bert_path, device="cpu").save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def colbert_path(tmp_path_factory: pytest.TempPathFactory, tiny_bert_path: Path) -> Path:
    """A ColBERT folder (model_kind "colbert"): the tiny BERT with a fresh projection."""
    import warnings

    from retrievals_rag.models.colbert import ColBERT

    path = tmp_path_factory.mktemp("tiny-colbert")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fresh projection
        ColBERT.from_pretrained(tiny_bert_path, device="cpu").save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def llm_ranker_path(tmp_path_factory: pytest.TempPathFactory, tiny_llama_path: Path) -> Path:
    """An LLM-ranker folder (model_kind "llm_ranker") saved from the tiny Llama."""
    from retrievals_rag.models.llm_ranking import LLMRanker

    path = tmp_path_factory.mktemp("tiny-llm-ranker")
    LLMRanker.from_pretrained(tiny_llama_path, target_token=LLM_TARGET_TOKEN, device="cpu").save_pretrained(
        path
    )
    return path


@pytest.fixture(scope="session")
def tiny_cross_encoder(cross_encoder_path: Path) -> Any:  # -> AutoModelForRanking
    from retrievals_rag.models.ranking import AutoModelForRanking

    return AutoModelForRanking.from_pretrained(cross_encoder_path, device="cpu")


@pytest.fixture(scope="session")
def tiny_llm_ranker(tiny_llama_path: Path) -> Any:  # -> LLMRanker
    from retrievals_rag.models.llm_ranking import LLMRanker

    return LLMRanker.from_pretrained(tiny_llama_path, target_token=LLM_TARGET_TOKEN, device="cpu")


@pytest.fixture(scope="session")
def tiny_colbert(colbert_path: Path) -> Any:  # -> ColBERT
    from retrievals_rag.models.colbert import ColBERT

    return ColBERT.from_pretrained(colbert_path, device="cpu")


RANKER_KINDS = ("cross_encoder", "llm_ranker", "colbert")


@pytest.fixture(params=RANKER_KINDS)
def any_ranker(request: pytest.FixtureRequest) -> Any:
    """Each kind of ranker in turn: the tiny cross-encoder, LLM ranker and ColBERT."""
    fixture = {
        "cross_encoder": "tiny_cross_encoder",
        "llm_ranker": "tiny_llm_ranker",
        "colbert": "tiny_colbert",
    }
    return request.getfixturevalue(fixture[request.param])


class OverlapTracker:
    """Wraps a model method; counts the calls that ran while another was running (there should be none)."""

    def __init__(self, function: Callable[..., Any], seconds: float = 0.05) -> None:
        self.function = function
        self.seconds = seconds
        self.active = 0
        self.overlaps = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.active += 1
        self.overlaps += self.active > 1
        time.sleep(self.seconds)
        try:
            return self.function(*args, **kwargs)
        finally:
            self.active -= 1
