"""The store against a real Chroma server (`chroma run` on 127.0.0.1), started and stopped by the test."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from retrievals_rag.rag.retrieve import Retriever
from retrievals_rag.rag.store import VectorStore
from tests.rag.conftest import LOOPBACK, text_document

STARTUP_TIMEOUT_S = 60


def chroma_command() -> str:
    beside_python = Path(sys.executable).parent / "chroma"
    command = str(beside_python) if beside_python.is_file() else shutil.which("chroma")
    if command is None:
        pytest.skip("the chroma command (from the chromadb package) is not installed")
    return command


@pytest.fixture
def chroma_server(tmp_path: Path, free_port: int) -> Iterator[str]:
    """A `chroma run` server on a free loopback port; its URL. Always stopped afterwards."""
    import httpx

    log = (tmp_path / "chroma.log").open("wb")
    process = subprocess.Popen(
        [
            chroma_command(),
            "run",
            "--path",
            str(tmp_path / "server-data"),
            "--host",
            LOOPBACK,
            "--port",
            str(free_port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://{LOOPBACK}:{free_port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"chroma run exited with {process.returncode}: {(tmp_path / 'chroma.log').read_text()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/api/v2/heartbeat", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"chroma run did not answer within {STARTUP_TIMEOUT_S} s")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
        log.close()


def test_index_and_query_through_a_chroma_server(chroma_server: str, tiny_function: Any) -> None:
    store = VectorStore(
        chroma_url=chroma_server, embedding_function=tiny_function, chunk_size=24, chunk_overlap=4
    )
    store.create_collection("remote-notes")
    document = text_document("a.txt", topic="volcano")

    added = store.add_document("remote-notes", document)

    assert added == len(store.split(document)) > 1
    assert store.add_document("remote-notes", document) == 0
    assert store.list_collections() == ["remote-notes"]
    assert [(info.source, info.chunk_count) for info in store.list_documents("remote-notes")] == [
        ("a.txt", added)
    ]
    results = Retriever(store, "remote-notes", top_k=3, use_bm25=True).retrieve("magma crust")
    assert len(results) == 3
    assert all(type(result.score) is float and result.source == "a.txt" for result in results)
    assert store.delete_document("remote-notes", "a.txt") == added
    assert store.count("remote-notes") == 0
