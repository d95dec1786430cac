from __future__ import annotations

from pathlib import Path

import pytest

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
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-bert-no-dropout")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    BertModel(config).save_pretrained(path)
    tokenizer.model_max_length = 128
    tokenizer.save_pretrained(path)
    return path
