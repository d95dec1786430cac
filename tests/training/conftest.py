from __future__ import annotations

from pathlib import Path

import pytest

from ..conftest import build_tiny_bert

WORDS = "cell gene protein brain cancer study risk patients treatment human".split()


def make_records(count: int = 40) -> list[dict]:
    """Queries whose positive shares their topic word; negatives are about another topic."""
    return [
        {
            "query": f"{WORDS[i % 10]} {WORDS[(i * 3) % 10]}",
            "positive": [f"the {WORDS[i % 10]} study of {WORDS[(i * 3) % 10]}"],
            "negative": [
                f"{WORDS[(i + 1) % 10]} risk",
                f"{WORDS[(i + 2) % 10]} human",
                f"{WORDS[(i + 5) % 10]}",
            ],
        }
        for i in range(count)
    ]


@pytest.fixture(scope="session")
def no_dropout_bert_path(tmp_path_factory: pytest.TempPathFactory, minilm_path: Path) -> Path:
    """A tiny BERT without dropout, so that runs in different processes are bit-comparable."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert-no-dropout"), minilm_path, dropout=0.0)
