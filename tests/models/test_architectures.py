"""Architectures beyond BERT: heads, output widths, tokenizers without a BOS, padding sides and short position
tables, each on a tiny random model built from a config at test time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from retrievals_rag import AutoModelForEmbedding, AutoModelForRanking
from retrievals_rag.models.lora import LoraSettings

PAIRS = [
    ("what is a cell", "the cell is the unit of the human brain"),
    ("cancer risk", "patients with a gene study"),
    ("how", "the protein"),
]


def build_encoder(
    path: Path,
    tokenizer_source: Path,
    architecture: str,
    *,
    positions: int = 64,
    model_max_length: int = 64,
    padding_side: str = "right",
) -> Path:
    """Save a 2-layer, 32-wide random encoder with ``tokenizer_source``'s WordPiece tokenizer into ``path``.

    ``architecture``: ``"bert"``, ``"bert-without-pooler"`` (a checkpoint without BERT's pooler, as sentence
    encoders are often saved), ``"distilbert"``, ``"modernbert"``, ``"albert"`` or ``"electra"`` (the last two
    with input embeddings narrower than their output).
    """
    import transformers
    from transformers import AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    shape = {
        "vocab_size": tokenizer.vocab_size,
        "pad_token_id": tokenizer.pad_token_id,
        "max_position_embeddings": positions,
    }
    bert_like = {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        **shape,
    }
    if architecture in ("bert", "bert-without-pooler"):
        model = transformers.BertModel(
            transformers.BertConfig(**bert_like), add_pooling_layer=architecture == "bert"
        )
    elif architecture == "albert":
        model = transformers.AlbertModel(transformers.AlbertConfig(embedding_size=16, **bert_like))
    elif architecture == "electra":
        model = transformers.ElectraModel(transformers.ElectraConfig(embedding_size=16, **bert_like))
    elif architecture == "distilbert":
        config = transformers.DistilBertConfig(
            dim=32, n_layers=2, n_heads=2, hidden_dim=64, dropout=0.0, attention_dropout=0.0, **shape
        )
        model = transformers.DistilBertModel(config)
    elif architecture == "modernbert":
        config = transformers.ModernBertConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            global_attn_every_n_layers=1,
            local_attention=16,
            cls_token_id=tokenizer.cls_token_id,
            sep_token_id=tokenizer.sep_token_id,
            **shape,
        )
        model = transformers.ModernBertModel(config)
    else:
        raise ValueError(architecture)
    model.save_pretrained(path)
    if architecture in ("distilbert", "modernbert"):  # they take no token type ids
        tokenizer.model_input_names = ["input_ids", "attention_mask"]
    tokenizer.model_max_length = model_max_length
    tokenizer.padding_side = padding_side
    tokenizer.save_pretrained(path)
    return path


def _has_modernbert() -> bool:
    import importlib.util

    return importlib.util.find_spec("transformers.models.modernbert") is not None  # without importing it


LORA_HEADS = [
    "bert",
    "bert-without-pooler",
    "distilbert",
    pytest.param(
        "modernbert",
        marks=pytest.mark.skipif(not _has_modernbert(), reason="this transformers has no ModernBERT"),
    ),
]


@pytest.mark.parametrize("architecture", LORA_HEADS)
def test_a_cross_encoder_with_lora_saves_its_whole_fresh_head(architecture, tmp_path, minilm_path) -> None:
    """Every module the checkpoint did not hold (ModernBERT's ``head`` beside its ``classifier``, DistilBERT's
    ``pre_classifier``, a pooler the checkpoint lacked) trains whole and is saved with the adapter.

    Before, only ``classifier`` / ``score`` were: ModernBERT's adapter reloaded on a newly random ``head``
    (other scores at every load), and DistilBERT failed in peft ("modules_to_save cannot be applied to modules
    of type ... lora.layer.Linear")."""
    folder = build_encoder(tmp_path / "encoder", minilm_path, architecture)
    with pytest.warns(UserWarning, match="randomly initialised"):
        ranker = AutoModelForRanking.from_pretrained(folder, device="cpu")
    ranker.enable_lora(LoraSettings(r=4, alpha=8, dropout=0.0))
    torch.manual_seed(1)
    with torch.no_grad():  # as if trained: the adapter and every fully trained copy move
        for parameter in ranker.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn_like(parameter) * 0.3)
    scores = ranker.compute_score(PAIRS)
    assert np.ptp(scores) > 0

    ranker.save_pretrained(tmp_path / "adapter")
    assert not (tmp_path / "adapter" / "model.safetensors").exists()
    for merge in (False, True, False):  # twice unmerged: a random part would differ between two loads
        reloaded = AutoModelForRanking.from_pretrained(tmp_path / "adapter", device="cpu", merge_lora=merge)
        assert reloaded.has_lora is not merge
        assert reloaded.compute_score(PAIRS) == pytest.approx(scores, abs=1e-5)
    ranker.merge_lora()
    assert ranker.compute_score(PAIRS) == pytest.approx(scores, abs=1e-5)


def build_decoder(
    path: Path,
    architecture: str,
    *,
    positions: int = 64,
    opt_output_width: int = 32,
    padding_side: str = "right",
) -> Path:
    """Save a 2-layer random decoder (``"gpt2"``, ``"llama"`` or ``"opt"``) with a word-level tokenizer that,
    like GPT-2's, Qwen2's and SmolLM2's, adds no BOS: ``""`` is no token at all.

    ``opt_output_width``: OPT's ``word_embed_proj_dim``, the width it projects its output to (OPT-350m: 512 of
    1,024); the hidden size is 48.
    """
    import transformers

    from tests.conftest import build_word_tokenizer

    torch.manual_seed(0)
    tokenizer = build_word_tokenizer(bos=False)
    shape = {"vocab_size": len(tokenizer), "bos_token_id": 1, "eos_token_id": 2}
    if architecture == "gpt2":
        config = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=positions, **shape)
        model = transformers.GPT2LMHeadModel(config)
    elif architecture == "llama":
        config = transformers.LlamaConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=positions,
            **shape,
        )
        model = transformers.LlamaForCausalLM(config)
    elif architecture == "opt":
        config = transformers.OPTConfig(
            hidden_size=48,
            ffn_dim=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            word_embed_proj_dim=opt_output_width,
            max_position_embeddings=positions,
            pad_token_id=0,
            **shape,
        )
        model = transformers.OPTForCausalLM(config)
    else:
        raise ValueError(architecture)
    model.save_pretrained(path)
    tokenizer.model_max_length = positions
    tokenizer.padding_side = padding_side
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.parametrize("architecture", ["gpt2", "llama"])
@pytest.mark.parametrize("pooling_method", ["mean", "weighted_mean", "cls", "last"])
def test_an_empty_text_gets_the_same_finite_vector_alone_and_in_a_batch(
    architecture, pooling_method, tmp_path
) -> None:
    """Before, ``""`` was no token at all on a tokenizer without a BOS: alone it failed inside the transformer
    ("cannot reshape tensor of 0 elements"), in a batch it got a zero vector (mean) or a padding token's (cls)."""
    folder = build_decoder(tmp_path, architecture)
    embedder = AutoModelForEmbedding.from_pretrained(folder, pooling_method=pooling_method, device="cpu")
    assert all(embedder.tokenize_ids(["", "the cell"]))

    alone = embedder.encode("")
    batch = embedder.encode(["", "the cell is the unit of the human brain", "a"])
    assert np.isfinite(alone).all() and np.linalg.norm(alone) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(batch[0], alone, atol=1e-5)


def test_an_empty_pair_scores_alone_as_in_a_batch_on_a_decoder_cross_encoder(tmp_path) -> None:
    """GPT-2's tokenizer frames a (query, document) pair with nothing: ``("", "")`` was an empty row, which failed
    alone (IndexError) and scored whatever the padding gave in a batch."""
    folder = build_decoder(tmp_path, "gpt2")
    with pytest.warns(UserWarning, match="randomly initialised"):
        ranker = AutoModelForRanking.from_pretrained(folder, device="cpu")
    alone = ranker.compute_score(("", ""))
    batch = ranker.compute_score([("", ""), ("the cell", "the cell is the unit of the human brain")])
    assert np.isfinite(alone)
    assert batch[0] == pytest.approx(alone, abs=1e-5)


@pytest.mark.parametrize("architecture", ["bert", "distilbert", "gpt2", "llama"])
def test_a_text_gets_the_same_vector_alone_and_in_a_batch_when_the_tokenizer_pads_left(
    architecture, tmp_path, minilm_path
) -> None:
    """Absolute position ids count from a row's first token: padded on the left, a short text's positions moved
    with its batch's longest text. Before, an encoder whose saved tokenizer pads on the left got another vector in
    a batch than alone (cosine 0.89 on BERT), in ``encode`` and in the training collator."""
    import copy

    from retrievals_rag.data.collators import EmbeddingCollator

    if architecture in ("gpt2", "llama"):
        folder = build_decoder(tmp_path, architecture, padding_side="left")
        pooling_method = "mean"  # the pooling that reads every position; "last" is checked in test_embedding
    else:
        folder = build_encoder(tmp_path, minilm_path, architecture, padding_side="left")
        pooling_method = None
    embedder = AutoModelForEmbedding.from_pretrained(folder, pooling_method=pooling_method, device="cpu")
    short, long = "what is a cell", "the cell is the unit of the human brain and the gene study " * 2

    alone = embedder.encode(short)
    np.testing.assert_allclose(embedder.encode([short, long])[0], alone, atol=1e-5)
    assert embedder.tokenizer.padding_side == "right"  # the saved tokenizer pads as encode does

    left_tokenizer = copy.deepcopy(embedder.tokenizer)
    left_tokenizer.padding_side = "left"
    batch = EmbeddingCollator(left_tokenizer)(
        [{"query": short, "document": long}, {"query": long, "document": short}]
    )
    assert batch["query"]["attention_mask"][0, 0] == 1  # padded on the right
    with torch.inference_mode():
        trained_on = embedder(**batch["query"])[0].numpy()
    np.testing.assert_allclose(trained_on, alone, atol=1e-5)


@pytest.mark.parametrize("architecture", ["opt", "albert", "electra"])
def test_the_vectors_are_as_wide_as_the_transformers_output(architecture, tmp_path, minilm_path) -> None:
    """OPT-350m projects its output to ``word_embed_proj_dim`` (here 24 of its 48 hidden units); ALBERT and ELECTRA
    embed their input narrower (16) than their output (32). Before, the embedder and ColBERT's projection took the
    config's ``hidden_size``: on OPT, ``encode`` failed ("shape mismatch: value tensor of shape [2, 24]") and so
    did ColBERT's projection."""
    from retrievals_rag import ColBERT

    if architecture == "opt":
        folder, width = build_decoder(tmp_path / "model", "opt", opt_output_width=24), 24
    else:
        folder, width = build_encoder(tmp_path / "model", minilm_path, architecture), 32
    embedder = AutoModelForEmbedding.from_pretrained(folder, pooling_method="mean", device="cpu")
    assert embedder.embedding_dimension == width
    assert embedder.encode(["the cell", "a gene study of the human brain"]).shape == (2, width)

    with pytest.warns(UserWarning, match="no colbert_linear"):
        colbert = ColBERT.from_pretrained(folder, colbert_dim=8, device="cpu")
    assert colbert.colbert_linear.in_features == width
    scores = colbert.compute_score([("the cell", "the cell is the unit of the brain")])
    colbert.save_pretrained(tmp_path / "colbert")
    reloaded = ColBERT.from_pretrained(tmp_path / "colbert", device="cpu")
    assert reloaded.compute_score([("the cell", "the cell is the unit of the brain")]) == pytest.approx(
        scores
    )


def test_the_default_max_length_is_capped_at_the_models_positions(tmp_path, minilm_path) -> None:
    """A tokenizer that names more than the model learned (MiniLM's 512 beside 64 positions): before, the default
    max_length was the tokenizer's 512, which the load then refused ("max_length 512 is more than the model
    takes"), so the folder loaded only with an explicit max_length."""
    from transformers import AutoTokenizer

    from retrievals_rag import ColBERT, LLMRanker

    encoder = build_encoder(tmp_path / "encoder", minilm_path, "bert", positions=64, model_max_length=512)
    decoder = build_decoder(tmp_path / "decoder", "gpt2", positions=32)
    tokenizer = AutoTokenizer.from_pretrained(decoder)
    tokenizer.model_max_length = 1024
    tokenizer.save_pretrained(decoder)
    long_text = "the cell " * 300

    embedder = AutoModelForEmbedding.from_pretrained(encoder, device="cpu")
    assert embedder.max_length == 64
    assert embedder.encode(long_text).shape == (32,)
    with pytest.warns(UserWarning, match="randomly initialised"):
        assert AutoModelForRanking.from_pretrained(encoder, device="cpu").max_length == 64
    with pytest.warns(UserWarning, match="no colbert_linear"):
        colbert = ColBERT.from_pretrained(encoder, device="cpu")
    assert (colbert.max_length, colbert.query_max_length) == (64, 32)
    assert AutoModelForEmbedding.from_pretrained(decoder, device="cpu").max_length == 32
    llm_ranker = LLMRanker.from_pretrained(decoder, device="cpu", scoring="query_likelihood")
    assert llm_ranker.max_length == 32
    assert len(llm_ranker.compute_score([(long_text, long_text)])) == 1

    with pytest.raises(ValueError, match=r"max_length 128 is more than the model takes: .* hold 64 tokens"):
        AutoModelForEmbedding.from_pretrained(encoder, max_length=128, device="cpu")
