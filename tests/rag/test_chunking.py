"""Chunking: token sizes from the embedder's tokenizer, offsets within the page, stable content ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from retrievals_rag.rag.chunking import Chunker, chunk_id, default_chunk_sizes, document_id
from retrievals_rag.rag.loaders import LoadedDocument, Page


@pytest.fixture(scope="module")
def minilm_tokenizer(minilm_path: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path)


def long_text(sentences: int) -> str:
    return " ".join(
        f"Sentence {index} says that insulin lowers the glucose level of the blood."
        for index in range(sentences)
    )


def test_defaults_fit_minilm(minilm_tokenizer: Any) -> None:
    chunker = Chunker(minilm_tokenizer, max_length=256)

    assert (chunker.chunk_size, chunker.chunk_overlap) == (200, 40)
    assert default_chunk_sizes(512) == (400, 80)


def test_chunks_fit_the_token_budget_and_offsets_point_into_the_page(minilm_tokenizer: Any) -> None:
    chunker = Chunker(minilm_tokenizer, max_length=256, chunk_size=50, chunk_overlap=10)
    page_text = "Heading\n\n" + long_text(40)
    document = LoadedDocument("a.pdf", [Page("short first page", 1), Page(page_text, 2)])

    chunks = chunker.split(document)

    assert len(chunks) > 5
    assert [chunk.chunk_index for chunk in chunks] == list(range(len(chunks)))
    assert all(chunker.count_tokens(chunk.text) <= 50 for chunk in chunks)
    for chunk in chunks:
        page = document.pages[0 if chunk.page_number == 1 else 1]
        assert page.text[chunk.start_index : chunk.start_index + len(chunk.text)] == chunk.text
    starts = [chunk.start_index for chunk in chunks if chunk.page_number == 2]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    assert {chunk.document_id for chunk in chunks} == {document_id("a.pdf")}
    # Every chunk still fits the embedder's window with its special tokens.
    assert max(len(minilm_tokenizer(chunk.text)["input_ids"]) for chunk in chunks) <= 256


def test_ids_are_stable_and_depend_on_source(minilm_tokenizer: Any) -> None:
    document = LoadedDocument("a.txt", [Page(long_text(30))])
    first = Chunker(minilm_tokenizer, max_length=256, chunk_size=40, chunk_overlap=8).split(document)
    again = Chunker(minilm_tokenizer, max_length=256, chunk_size=40, chunk_overlap=8).split(document)
    other = Chunker(minilm_tokenizer, max_length=256, chunk_size=40, chunk_overlap=8).split(
        LoadedDocument("b.txt", document.pages)
    )

    assert [chunk.id for chunk in first] == [chunk.id for chunk in again]
    assert len({chunk.id for chunk in first}) == len(first)
    assert not {chunk.id for chunk in first} & {chunk.id for chunk in other}
    assert first[0].id == chunk_id("a.txt", None, first[0].start_index, first[0].text)


def test_a_passage_repeated_on_a_page_gets_two_ids(minilm_tokenizer: Any) -> None:
    paragraph = "Insulin lowers the glucose level of the blood."
    chunker = Chunker(minilm_tokenizer, max_length=256, chunk_size=12, chunk_overlap=0)

    chunks = chunker.split(LoadedDocument("a.txt", [Page(f"{paragraph}\n\n{paragraph}")]))

    assert [chunk.text for chunk in chunks] == [paragraph, paragraph]
    assert chunks[0].id != chunks[1].id


def test_metadata_has_no_none_values(minilm_tokenizer: Any) -> None:
    chunker = Chunker(minilm_tokenizer, max_length=256)
    document = LoadedDocument("a.txt", [Page("Volcanoes erupt.")], {"file_type": "text", "title": "Geo"})

    metadata = chunker.split(document)[0].metadata()

    assert metadata == {
        "file_type": "text",
        "title": "Geo",
        "source": "a.txt",
        "document_id": document_id("a.txt"),
        "chunk_index": 0,
        "start_index": 0,
    }


@pytest.mark.parametrize(
    ("chunk_size", "chunk_overlap", "message"),
    [
        (0, None, "chunk_size"),
        (300, None, "does not fit the embedder's window: max_length 256 less 2 special"),
        (256, None, "give a chunk_size of at most 254"),  # [CLS] and [SEP] need room
        (50, 50, "chunk_overlap"),
    ],
)
def test_invalid_sizes(
    minilm_tokenizer: Any, chunk_size: int, chunk_overlap: int | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Chunker(minilm_tokenizer, max_length=256, chunk_size=chunk_size, chunk_overlap=chunk_overlap)


def test_the_document_instruction_and_special_tokens_fit_beside_every_chunk(minilm_tokenizer: Any) -> None:
    instruction = "Represent this passage for retrieving relevant answers: "
    instruction_tokens = len(minilm_tokenizer(instruction, add_special_tokens=False)["input_ids"])
    capacity = 256 - 2 - instruction_tokens

    with pytest.raises(ValueError, match=f"at most {capacity}"):
        Chunker(minilm_tokenizer, max_length=256, chunk_size=capacity + 1, document_instruction=instruction)
    with pytest.raises(ValueError, match=f"at most {capacity - 1}"):
        Chunker(
            minilm_tokenizer,
            max_length=256,
            chunk_size=capacity,
            document_instruction=instruction,
            append_eos=True,
        )
    small_window = Chunker(minilm_tokenizer, max_length=48, document_instruction=instruction)
    assert small_window.chunk_size == 48 - 2 - instruction_tokens  # the default (37) lowered to fit
    full = Chunker(minilm_tokenizer, max_length=256, chunk_size=capacity, document_instruction=instruction)
    for _, text in full.split_text(long_text(80)):
        read = minilm_tokenizer(instruction + text)["input_ids"]  # what the embedder reads
        assert len(read) <= 256
