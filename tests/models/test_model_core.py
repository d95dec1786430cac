"""The shared model core: folders saved by release 0.1.0 load unchanged, every kind refuses a folder of another
kind, LoRA and merge_lora work alike for every kind, and the fixes of the model-core issue."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from retrievals_rag import AutoModelForEmbedding, AutoModelForRanking, ColBERT, LLMRanker
from retrievals_rag.models.lora import LoraSettings

LEGACY = Path(__file__).parent.parent / "data" / "legacy_0_1_0"


@pytest.fixture(scope="module")
def expected() -> dict:
    return json.loads((LEGACY / "expected.json").read_text(encoding="utf-8"))


def _pairs(expected: dict) -> list[tuple[str, str]]:
    return [(query, document) for query in expected["queries"] for document in expected["documents"]]


def test_an_embedding_folder_of_release_0_1_0_gives_the_same_vectors(expected: dict) -> None:
    model = AutoModelForEmbedding.from_pretrained(LEGACY / "embedding")
    assert model.query_instruction == "query: "
    np.testing.assert_allclose(
        model.encode_queries(expected["queries"]), expected["embedding"]["queries"], atol=1e-6
    )
    np.testing.assert_allclose(
        model.encode_corpus(expected["documents"]), expected["embedding"]["documents"], atol=1e-6
    )


@pytest.mark.parametrize(
    ("kind", "model_class"),
    [("cross_encoder", AutoModelForRanking), ("colbert", ColBERT), ("llm_ranker", LLMRanker)],
)
def test_a_ranker_folder_of_release_0_1_0_gives_the_same_scores(kind, model_class, expected: dict) -> None:
    model = model_class.from_pretrained(LEGACY / kind)
    assert model.compute_score(_pairs(expected)) == pytest.approx(expected[kind], abs=1e-5)
    # the cross-encoder's Auto class finds an LLM ranker folder by itself, as before
    if kind == "llm_ranker":
        assert isinstance(AutoModelForRanking.from_pretrained(LEGACY / kind), LLMRanker)


@pytest.mark.parametrize(
    ("folder", "model_class", "message"),
    [
        (
            "colbert",
            AutoModelForRanking,
            "holds a colbert model, not a cross_encoder model: load it with ColBERT",
        ),
        ("embedding", ColBERT, None),  # a ranker may start from an embedder (a fresh head / projection)
        (
            "cross_encoder",
            ColBERT,
            "holds a cross_encoder model, not a colbert model: load it with AutoModelFor",
        ),
        (
            "colbert",
            AutoModelForEmbedding,
            "holds a colbert model, not an embedding model: load it with ColBERT",
        ),
        ("cross_encoder", LLMRanker, "holds a cross_encoder model, not an llm_ranker model"),
    ],
)
def test_every_kind_refuses_a_folder_of_another_kind(folder, model_class, message) -> None:
    if message is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model_class.from_pretrained(LEGACY / folder)
        return
    with pytest.raises(ValueError, match=message):
        model_class.from_pretrained(LEGACY / folder)


def test_encode_corpus_takes_title_and_text_documents(expected: dict) -> None:
    model = AutoModelForEmbedding.from_pretrained(LEGACY / "embedding")
    as_objects = model.encode_corpus(
        [{"title": "the cell", "text": "is the unit of a study"}, {"text": "risk"}]
    )
    as_text = model.encode_corpus(["the cell is the unit of a study", "risk"])
    np.testing.assert_allclose(as_objects, as_text, atol=1e-6)
    assert model.encode_corpus({"title": "", "text": "risk"}).shape == (model.embedding_dimension,)
    with pytest.raises(ValueError, match=r"documents\[1\].*'text'"):
        model.encode_corpus(["fine", {"title": "no text"}])
    with pytest.raises(TypeError, match=r"documents\[0\] is int"):
        model.encode_corpus([3])  # type: ignore[list-item]


def test_merge_lora_on_a_folder_without_an_adapter_says_so() -> None:
    with pytest.warns(UserWarning, match="holds no LoRA adapter: there is nothing to merge"):
        AutoModelForEmbedding.from_pretrained(LEGACY / "embedding", merge_lora=True)


@pytest.mark.parametrize("kind", ["cross_encoder", "colbert", "llm_ranker"])
def test_every_ranker_trains_lora_saves_the_adapter_and_reloads_it_merged_or_not(
    kind, expected, tmp_path
) -> None:
    model_class = {"cross_encoder": AutoModelForRanking, "colbert": ColBERT, "llm_ranker": LLMRanker}[kind]
    model = model_class.from_pretrained(LEGACY / kind)
    model.enable_lora(LoraSettings(r=4, alpha=8, dropout=0.0))
    with torch.no_grad():  # a non-zero update, so that the adapter changes the scores
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.5)
    scores = model.compute_score(_pairs(expected))
    assert scores != pytest.approx(expected[kind], abs=1e-4)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "adapter_config.json").is_file() and not (tmp_path / "model.safetensors").is_file()
    for merge in (False, True):
        reloaded = model_class.from_pretrained(tmp_path, merge_lora=merge)
        assert reloaded.has_lora is not merge
        assert reloaded.compute_score(_pairs(expected)) == pytest.approx(scores, abs=1e-4)
    model.merge_lora()
    assert not model.has_lora
    assert model.compute_score(_pairs(expected)) == pytest.approx(scores, abs=1e-4)


def test_a_decoder_with_last_pooling_and_no_eos_pools_sep_or_says_how_to_fix(tmp_path, expected) -> None:
    from transformers import AutoTokenizer, LlamaConfig, LlamaModel

    tokenizer = AutoTokenizer.from_pretrained(LEGACY / "embedding")  # a BERT tokenizer: SEP, no EOS
    assert tokenizer.eos_token is None
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    LlamaModel(config).save_pretrained(tmp_path / "with-sep")
    tokenizer.save_pretrained(tmp_path / "with-sep")
    model = AutoModelForEmbedding.from_pretrained(tmp_path / "with-sep", pooling_method="last")
    ids = model.tokenize_ids(["what is a cell"])[0]
    assert ids[-1] == tokenizer.sep_token_id  # the SEP the tokenizer appends is the pooled end token
    assert model.encode(expected["queries"]).shape == (2, 16)
    model.save_pretrained(tmp_path / "saved")
    again = AutoModelForEmbedding.from_pretrained(tmp_path / "saved")
    np.testing.assert_allclose(
        again.encode(expected["queries"]), model.encode(expected["queries"]), atol=1e-6
    )

    tokenizer.sep_token = None
    tokenizer.save_pretrained(tmp_path / "no-end")
    LlamaModel(config).save_pretrained(tmp_path / "no-end")
    with pytest.raises(ValueError, match=r"no-end: pooling_method='last'.*neither an EOS nor a SEP"):
        AutoModelForEmbedding.from_pretrained(tmp_path / "no-end", pooling_method="last")


def test_inference_restores_the_mode_it_found() -> None:
    model = AutoModelForEmbedding.from_pretrained(LEGACY / "embedding")
    model.train()
    with model.inference():
        assert not model.training and not torch.is_grad_enabled()
    assert model.training
    model.encode(["a"])
    assert model.training


@pytest.mark.slow
def test_a_lora_adapter_folder_loads_in_sentence_transformers_with_the_same_vectors(
    minilm_path, tmp_path
) -> None:
    from sentence_transformers import SentenceTransformer

    model = AutoModelForEmbedding.from_pretrained(minilm_path, query_instruction="query: ")
    model.enable_lora(LoraSettings(r=4, alpha=8, dropout=0.0))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.05)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "adapter_config.json").is_file() and (tmp_path / "modules.json").is_file()
    texts = ["what is dense retrieval?", "BM25 ranks documents by shared terms."]
    st_model = SentenceTransformer(str(tmp_path), device="cpu")
    base = AutoModelForEmbedding.from_pretrained(minilm_path, query_instruction="query: ")
    assert (
        np.abs(base.encode_queries(texts) - model.encode_queries(texts)).max() > 1e-3
    )  # the adapter matters
    np.testing.assert_allclose(st_model.encode_query(texts), model.encode_queries(texts), atol=1e-5)
    np.testing.assert_allclose(st_model.encode_document(texts), model.encode_corpus(texts), atol=1e-5)


def test_model_folder_problem_names_what_is_wrong_without_loading(
    tmp_path: Path, tiny_bert_path: Path
) -> None:
    from retrievals_rag.models.loading import model_folder_problem

    (tmp_path / "empty").mkdir()

    assert model_folder_problem(tiny_bert_path) is None
    assert (
        model_folder_problem(tmp_path / "empty")
        == f"{tmp_path / 'empty'} holds no model (config.json is missing)"
    )
    missing = model_folder_problem(tmp_path / "nowhere")
    assert missing is not None and "nowhere" in missing


class _Stream(io.StringIO):
    def __init__(self, terminal: bool) -> None:
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


@pytest.mark.parametrize("terminal", [True, False])
def test_progress_bar_for_long_work_shows_on_a_terminal_and_in_a_log(
    terminal: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """None: a bar for 1,000 items or more, live on a terminal, redrawn once a minute in a log file (a job under
    nohup used to write nothing for the whole encode)."""
    from retrievals_rag.models import base

    stream = _Stream(terminal)
    monkeypatch.setattr(base.sys, "stderr", stream)
    progress = base.Progress(base.PROGRESS_BAR_MIN_TEXTS, None, "Encoding")
    assert progress._bar.mininterval == (0.1 if terminal else base.PROGRESS_LOG_SECONDS)
    progress.update(base.PROGRESS_BAR_MIN_TEXTS)
    progress.close()
    assert "Encoding: 100%" in stream.getvalue()
    assert f"{base.PROGRESS_BAR_MIN_TEXTS}/{base.PROGRESS_BAR_MIN_TEXTS}" in stream.getvalue()


def test_progress_bar_stays_off_for_short_work_or_when_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from retrievals_rag.models import base

    stream = _Stream(False)
    monkeypatch.setattr(base.sys, "stderr", stream)
    for progress in (
        base.Progress(base.PROGRESS_BAR_MIN_TEXTS - 1, None, "Encoding"),
        base.Progress(5000, False, "x"),
    ):
        progress.update(3)
        progress.close()
    assert stream.getvalue() == ""


def test_a_roberta_shape_folder_whose_tokenizer_names_no_limit_takes_long_texts(
    tmp_path, minilm_path
) -> None:
    """RoBERTa, XLM-R, MPNet... start their position ids after the padding index: 66 positions take 64 tokens.
    Before, the default max_length was 66 and the first long text failed with an index error."""
    from tests.conftest import build_tiny_bert

    # model_max_length 1e30: what a tokenizer_config.json without a limit loads as
    build_tiny_bert(
        tmp_path, minilm_path, architecture="roberta", max_position_embeddings=66, model_max_length=int(1e30)
    )
    long_text = "the cell " * 200

    embedder = AutoModelForEmbedding.from_pretrained(tmp_path)
    assert embedder.max_length == 64
    assert embedder.encode([long_text]).shape == (1, 32)
    ranker = AutoModelForRanking.from_pretrained(tmp_path)
    assert len(ranker.compute_score([(long_text, long_text)])) == 1
    assert len(ColBERT.from_pretrained(tmp_path).compute_score([(long_text, long_text)])) == 1


@pytest.mark.parametrize("model_class", [AutoModelForEmbedding, AutoModelForRanking, ColBERT])
def test_a_max_length_beyond_the_learned_positions_is_refused_at_load(tiny_bert_path, model_class) -> None:
    """Before, it loaded, and the first text longer than 128 tokens failed with 'index out of range in self'."""
    with pytest.raises(
        ValueError, match=r"max_length 300 is more than the model takes: .* hold 128 tokens"
    ) as caught:
        model_class.from_pretrained(tiny_bert_path, max_length=300)

    assert str(tiny_bert_path) in str(caught.value)
    assert model_class.from_pretrained(tiny_bert_path, max_length=128).max_length == 128


@pytest.mark.parametrize("architecture", ["gpt2", "opt"])
def test_a_decoders_learned_positions_limit_max_length_too(tmp_path, architecture) -> None:
    """GPT-2 / GPT-Neo keep their learned positions in ``wpe``, OPT and BART in ``embed_positions`` (OPT's table
    holds two more rows than it takes). Before, neither was read: max_length=64 on a 32-position GPT-2 loaded, and
    the first long text failed with 'index out of range in self'."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, OPTConfig, OPTForCausalLM

    from tests.conftest import build_word_tokenizer

    torch.manual_seed(0)
    tokenizer = build_word_tokenizer()
    shape = {"vocab_size": len(tokenizer), "bos_token_id": 1, "eos_token_id": 2}
    if architecture == "gpt2":
        config = GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=32, **shape)
        GPT2LMHeadModel(config).save_pretrained(tmp_path)
    else:
        config = OPTConfig(
            hidden_size=32,
            ffn_dim=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            word_embed_proj_dim=32,
            max_position_embeddings=32,
            pad_token_id=0,
            **shape,
        )
        OPTForCausalLM(config).save_pretrained(tmp_path)
    tokenizer.model_max_length = int(1e30)  # no limit named: the positions decide
    tokenizer.save_pretrained(tmp_path)

    with pytest.raises(ValueError, match=r"max_length 64 is more than the model takes: .* hold 32 tokens"):
        AutoModelForEmbedding.from_pretrained(tmp_path, pooling_method="last", max_length=64)
    embedder = AutoModelForEmbedding.from_pretrained(tmp_path, pooling_method="last")
    assert embedder.max_length == 32
    assert embedder.encode(["cell " * 100]).shape == (1, 32)
