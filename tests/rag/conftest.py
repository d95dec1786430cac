"""Fixtures of the RAG engine tests: a store over the tiny random BERT, loopback-only sockets, file builders.

Only loopback connections are allowed (the Chroma server and the chat server the tests start themselves);
the embedded Chroma database needs no socket at all.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from retrievals_rag.rag.loaders import LoadedDocument, Page
from tests.local_http import LOOPBACK, loopback_only


@pytest.fixture(autouse=True)
def _loopback_only() -> Iterator[None]:
    with loopback_only():
        yield


@pytest.fixture(scope="session")
def tiny_function(tiny_bert_path: Path) -> Any:  # -> ChromaEmbeddingFunction
    """An embedding function of the tiny random BERT, on the CPU, loaded once per session."""
    from retrievals_rag.integrations.chroma import ChromaEmbeddingFunction

    function = ChromaEmbeddingFunction(tiny_bert_path, device="cpu")
    _ = function.model
    return function


@pytest.fixture
def store(tmp_path: Path, tiny_function: Any) -> Any:  # -> VectorStore
    """A store in a fresh folder over the tiny BERT, with 24-token chunks and batches of 4."""
    from retrievals_rag.rag.store import VectorStore

    return VectorStore(
        tmp_path / "data", embedding_function=tiny_function, chunk_size=24, chunk_overlap=4, batch_size=4
    )


def make_pdf(pages: list[str]) -> bytes:
    """A minimal valid PDF with one line of Helvetica text per page ("" gives a page without text)."""
    page_ids = [4 + 2 * index for index in range(len(pages))]
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{' '.join(f'{i} 0 R' for i in page_ids)}] /Count {len(pages)} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for page_id, text in zip(page_ids, pages, strict=True):
        content = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode() if text else b""
        objects.append(
            (
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                f"/Resources << /Font << /F1 3 0 R >> >> /Contents {page_id + 1} 0 R >>"
            ).encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
    output = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(output))
        output += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(output)
    output += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        output += f"{offset:010d} 00000 n \n".encode()
    output += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(output)


def make_docx(paragraphs: list[str]) -> bytes:
    """A DOCX file with these paragraphs, written by python-docx."""
    import docx

    word = docx.Document()
    for paragraph in paragraphs:
        word.add_paragraph(paragraph)
    buffer = io.BytesIO()
    word.save(buffer)
    return buffer.getvalue()


def make_docx_with_broken_xml() -> bytes:
    """A valid zip of a DOCX whose ``word/document.xml`` is not well-formed XML (lxml refuses it)."""
    original = zipfile.ZipFile(io.BytesIO(make_docx(["Magma rises through the crust."])))
    output = io.BytesIO()
    with zipfile.ZipFile(output, "w") as broken:
        for item in original.infolist():
            data = original.read(item.filename)
            broken.writestr(
                item, b"<w:document><w:body><w:p>cut off" if item.filename == "word/document.xml" else data
            )
    return output.getvalue()


def make_pdf_over_a_parser_limit() -> bytes:
    """A PDF whose cross-reference table declares far more entries than the file could hold: pypdf raises its
    ``LimitReachedError`` (not a ``PdfReadError``)."""
    return re.sub(rb"xref\n0 \d+", b"xref\n0 99999999", make_pdf(["Magma rises through the crust."]))


TOPICS = {
    "photosynthesis": "Photosynthesis converts light, water and carbon dioxide into sugar and oxygen in plants.",
    "eiffel": "The Eiffel Tower was completed in 1889 for the World's Fair in Paris, France.",
    "insulin": "Insulin is a hormone made by the pancreas that lowers the level of glucose in the blood.",
    "volcano": "A volcano erupts when magma from the mantle rises through the crust to the surface.",
}


def text_document(source: str, paragraphs: int = 6, topic: str = "photosynthesis") -> LoadedDocument:
    """A one-page document of ``paragraphs`` numbered sentences about ``topic``."""
    text = "\n\n".join(f"Paragraph {index} of {source}. {TOPICS[topic]}" for index in range(paragraphs))
    return LoadedDocument(source=source, pages=[Page(text)], metadata={"file_type": "text"})


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])
