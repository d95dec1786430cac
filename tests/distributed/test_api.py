"""The public names of retrievals_rag.distributed: pinned, and each resolves lazily."""

from __future__ import annotations

import pytest

import retrievals_rag.distributed as distributed

EXPECTED = [
    "EncodedCorpus",
    "ShardSpec",
    "add_to_chroma",
    "build_index",
    "encode_shards",
    "encode_with_ray",
    "load_encoded_corpus",
    "shards_for_process",
    "write_index",
]


def test_all_is_pinned() -> None:
    assert distributed.__all__ == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(distributed, name).__name__ == name
