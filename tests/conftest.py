"""Shared fixtures: tiny random models built from a config at test time, and the packaged MiniLM.

Nothing here reaches a model hub: HF_HUB_OFFLINE is set before transformers is imported.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SCIFACT_SUBSET = REPO_ROOT / "tests" / "data" / "scifact_subset"

TINY_WORDS = (
    "the a of and to in is for on with by from at as it be are was this that dense retrieval query document "
    "passage model text search web instruct given relevant answer retrieve passages answers what how why "
    "cell cells protein gene cancer brain study results patients risk treatment effect human"
).split()


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    from retrievals_rag.models.loading import default_embedding_model_path

    return default_embedding_model_path()


def build_tiny_bert(
    path: Path,
    tokenizer_source: Path,
    dropout: float = 0.1,
    *,
    architecture: str = "bert",
    max_position_embeddings: int = 128,
    model_max_length: int = 128,
) -> Path:
    """Save a 2-layer, 32-wide random encoder (``"bert"``, or ``"roberta"``: position ids after the padding
    index) with the tokenizer of ``tokenizer_source`` into ``path``."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel, RobertaConfig, RobertaModel

    config_class, model_class = {"bert": (BertConfig, BertModel), "roberta": (RobertaConfig, RobertaModel)}[
        architecture
    ]
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    config = config_class(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_position_embeddings,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        pad_token_id=tokenizer.pad_token_id if architecture == "bert" else 1,
    )
    model_class(config).save_pretrained(path)
    tokenizer.model_max_length = model_max_length
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_bert_path(tmp_path_factory: pytest.TempPathFactory, minilm_path: Path) -> Path:
    """A tiny random BERT with MiniLM's (real WordPiece) tokenizer; a bare transformers folder."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), minilm_path)


def build_word_tokenizer(bos: bool = True):  # -> PreTrainedTokenizerFast
    """A word-level fast tokenizer like a Llama one: <s> prefix, </s> as EOS, no pad token."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(["<unk>", "<s>", "</s>", *TINY_WORDS])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    if bos:
        backend.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


@pytest.fixture(scope="session")
def tiny_llama_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama-shape causal LM (LlamaForCausalLM) with a word-level tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = build_word_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.model_max_length = 256
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_chat_path(tmp_path_factory: pytest.TempPathFactory, tiny_llama_path: Path) -> Path:
    """The tiny random Llama with a chat template (each message's content, then a space)."""
    import shutil

    from transformers import AutoTokenizer

    path = tmp_path_factory.mktemp("tiny-chat")
    shutil.copytree(tiny_llama_path, path, dirs_exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.chat_template = "{% for message in messages %}{{ message['content'] }} {% endfor %}"
    tokenizer.save_pretrained(path)
    return path
