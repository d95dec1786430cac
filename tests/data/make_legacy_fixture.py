"""Write tests/data/legacy_0_1_0/: tiny model folders of every kind saved by release 0.1.0's code, with the
vectors and scores that code gave, so that tests prove later code loads old folders to the same outputs.

Run once with the old release first on the path (it was run at commit 7646c86):

    git worktree add /tmp/oldrel 7646c86
    PYTHONPATH=/tmp/oldrel python tests/data/make_legacy_fixture.py tests/data/legacy_0_1_0
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

WORDS = "the a is of cell cells cancer risk gene study what how dense retrieval query document yes no".split()
QUERIES = ["what is a cell", "cancer risk"]
DOCUMENTS = ["the cell is the unit of a study", "gene risk of cancer cells", "dense retrieval"]


def bert_tokenizer() -> PreTrainedTokenizerFast:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused0]", "[unused1]"]
    vocab = {token: index for index, token in enumerate([*specials, *WORDS, ".", ","])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=64,
    )


def llama_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {token: index for index, token in enumerate(["<unk>", "<s>", "</s>", *WORDS, ":", "'", "b"])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>", model_max_length=128
    )


def main(target: Path) -> None:
    from retrievals_rag import AutoModelForEmbedding, AutoModelForRanking, ColBERT, LLMRanker, __version__

    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp())
    tokenizer = bert_tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(work / "bert")
    tokenizer.save_pretrained(work / "bert")
    llama = llama_tokenizer()
    llama_config = LlamaConfig(
        vocab_size=len(llama),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=128,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(llama_config).save_pretrained(work / "llama")
    llama.save_pretrained(work / "llama")

    pairs = [(query, document) for query in QUERIES for document in DOCUMENTS]
    expected: dict[str, object] = {"version": __version__, "queries": QUERIES, "documents": DOCUMENTS}
    embedder = AutoModelForEmbedding.from_pretrained(work / "bert", query_instruction="query: ")
    embedder.save_pretrained(target / "embedding")
    expected["embedding"] = {
        "queries": embedder.encode_queries(QUERIES).tolist(),
        "documents": embedder.encode_corpus(DOCUMENTS).tolist(),
    }
    cross_encoder = AutoModelForRanking.from_pretrained(work / "bert", max_length=48)
    cross_encoder.save_pretrained(target / "cross_encoder")
    expected["cross_encoder"] = cross_encoder.compute_score(pairs)
    colbert = ColBERT.from_pretrained(work / "bert", colbert_dim=8, query_max_length=8, max_length=32)
    colbert.save_pretrained(target / "colbert")
    expected["colbert"] = colbert.compute_score(pairs)
    ranker = LLMRanker.from_pretrained(work / "llama", max_length=96, prompt="yes or no", target_token="yes")
    ranker.save_pretrained(target / "llm_ranker")
    expected["llm_ranker"] = ranker.compute_score(pairs)
    (target / "expected.json").write_text(json.dumps(expected, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
