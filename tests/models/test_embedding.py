from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from retrievals_rag import AutoModelForEmbedding
from retrievals_rag.models.config import CONFIG_FILE_NAME
from retrievals_rag.models.embedding import apply_instruction

SEED_QUERY_INSTRUCTION = (
    "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery: "
)
TEXTS = [
    "dense retrieval of passages",
    "the cell",
    "",
    "what is the risk of cancer in patients with a gene study " * 6,
    "how",
]


@pytest.fixture(scope="module")
def tiny_bert(tiny_bert_path: Path) -> AutoModelForEmbedding:
    return AutoModelForEmbedding.from_pretrained(tiny_bert_path, device="cpu")


def test_bare_encoder_folder_defaults(tiny_bert: AutoModelForEmbedding) -> None:
    assert tiny_bert.pooling_method == "mean"
    assert tiny_bert.normalize_embeddings is True
    assert tiny_bert.max_length == 128
    assert tiny_bert.query_instruction is None
    assert tiny_bert.model.config._attn_implementation == "sdpa"


def test_encode_shapes_types_and_norms(tiny_bert: AutoModelForEmbedding) -> None:
    vectors = tiny_bert.encode(TEXTS)
    assert isinstance(vectors, np.ndarray)
    assert vectors.dtype == np.float32
    assert vectors.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    single = tiny_bert.encode(TEXTS[0])
    assert single.shape == (32,)
    np.testing.assert_allclose(single, vectors[0], atol=1e-6)
    as_tensor = tiny_bert.encode(TEXTS, convert_to="torch")
    assert isinstance(as_tensor, torch.Tensor)
    assert as_tensor.dtype == torch.float32
    assert tiny_bert.encode([]).shape == (0, 32)


def test_batching_does_not_change_the_vectors(tiny_bert: AutoModelForEmbedding) -> None:
    one_by_one = np.stack([tiny_bert.encode(text) for text in TEXTS])
    tiny_budget = tiny_bert.encode(TEXTS, token_budget=8, batch_size=2)
    large = tiny_bert.encode(TEXTS, token_budget=100_000, batch_size=1000)
    np.testing.assert_allclose(tiny_budget, one_by_one, atol=1e-5)
    np.testing.assert_allclose(large, one_by_one, atol=1e-5)


def test_model_is_in_eval_mode_and_encode_keeps_the_callers_mode(tiny_bert_path: Path) -> None:
    model = AutoModelForEmbedding.from_pretrained(tiny_bert_path)
    assert not model.training and not model.model.training
    first = model.encode(TEXTS)
    assert not model.model.training  # dropout stays off after encoding
    np.testing.assert_array_equal(model.encode(TEXTS), first)
    model.train()
    model.encode(TEXTS[:1])
    assert model.training and model.model.training  # a training caller gets its mode back


def test_long_text_is_truncated_not_dropped(tiny_bert: AutoModelForEmbedding) -> None:
    ids = tiny_bert.tokenize_ids(["cell " * 1000])[0]
    assert len(ids) == tiny_bert.max_length
    assert np.isfinite(tiny_bert.encode("cell " * 1000)).all()


def test_non_string_input_names_its_index(tiny_bert: AutoModelForEmbedding) -> None:
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        tiny_bert.encode(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="convert_to"):
        tiny_bert.encode(["ok"], convert_to="list")  # type: ignore[arg-type]


def test_a_dict_is_refused_not_embedded_by_its_keys(tiny_bert: AutoModelForEmbedding) -> None:
    """``list()`` of a dict is its keys: ``encode({"d1": "text"})`` embedded the id "d1" without a word."""
    with pytest.raises(TypeError, match=r"got a dict \(its keys would be embedded\)"):
        tiny_bert.encode({"d1": "Cells divide."})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="got a dict"):
        tiny_bert.encode_queries({"q1": "do cells divide?"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="got bytes"):
        tiny_bert.encode(b"cells")  # type: ignore[arg-type]
    assert tiny_bert.encode(text for text in ["a", "b"]).shape == (2, tiny_bert.embedding_dimension)


def test_instruction_prefix_and_placeholder() -> None:
    assert apply_instruction("query: ", "cells") == "query: cells"
    assert apply_instruction("Represent {} for retrieval", "cells") == "Represent cells for retrieval"
    assert apply_instruction("{}!", "text with {} braces") == "text with {} braces!"
    assert apply_instruction(None, "cells") == "cells"
    assert apply_instruction("", "cells") == "cells"


def test_queries_and_documents_get_their_own_instruction(tiny_bert_path: Path) -> None:
    model = AutoModelForEmbedding.from_pretrained(
        tiny_bert_path, query_instruction="query: ", document_instruction="passage: {} end"
    )
    np.testing.assert_allclose(
        model.encode_queries(TEXTS), model.encode(["query: " + t for t in TEXTS]), atol=1e-6
    )
    np.testing.assert_allclose(
        model.encode_corpus(TEXTS), model.encode([f"passage: {t} end" for t in TEXTS]), atol=1e-6
    )
    assert not np.allclose(model.encode_queries(TEXTS[:1]), model.encode_corpus(TEXTS[:1]))


def test_fp16_on_cpu_falls_back_with_one_warning(tiny_bert_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = AutoModelForEmbedding.from_pretrained(tiny_bert_path, use_fp16=True, device="cpu")
        model.encode(TEXTS)
    messages = [str(w.message) for w in caught if "float16" in str(w.message)]
    assert len(messages) == 1
    assert next(model.model.parameters()).dtype == torch.float32


def test_save_and_reload_keeps_every_setting(tiny_bert_path: Path, tmp_path: Path) -> None:
    model = AutoModelForEmbedding.from_pretrained(
        tiny_bert_path,
        pooling_method="cls",
        normalize_embeddings=False,
        max_length=64,
        query_instruction="q: ",
        document_instruction="d: ",
    )
    model.save_pretrained(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / CONFIG_FILE_NAME).read_text())
    assert saved["pooling_method"] == "cls"
    assert saved["max_length"] == 64
    assert (tmp_path / "saved" / "model.safetensors").is_file()
    assert not list((tmp_path / "saved").glob("*.bin"))
    reloaded = AutoModelForEmbedding.from_pretrained(tmp_path / "saved")
    assert reloaded.settings == model.settings
    np.testing.assert_allclose(reloaded.encode_queries(TEXTS), model.encode_queries(TEXTS), atol=1e-6)
    # an explicit argument still wins over the saved folder, and is recorded when saved again
    overridden = AutoModelForEmbedding.from_pretrained(tmp_path / "saved", pooling_method="mean")
    assert overridden.pooling_method == "mean"
    assert overridden.query_instruction == "q: "
    overridden.save_pretrained(tmp_path / "again")
    assert AutoModelForEmbedding.from_pretrained(tmp_path / "again").pooling_method == "mean"


@pytest.mark.parametrize("pooling", ["cls", "mean", "last", "weighted_mean"])
@pytest.mark.parametrize("normalize", [True, False])
def test_saved_folder_gives_the_same_vectors_in_sentence_transformers(
    tiny_bert_path: Path, tmp_path: Path, pooling: str, normalize: bool
) -> None:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    model = AutoModelForEmbedding.from_pretrained(
        tiny_bert_path,
        pooling_method=pooling,  # type: ignore[arg-type]
        normalize_embeddings=normalize,
        max_length=16,
        query_instruction="query: ",
        document_instruction="passage: ",
    )
    model.save_pretrained(tmp_path)
    reference = sentence_transformers.SentenceTransformer(str(tmp_path), device="cpu")
    assert reference.max_seq_length == 16
    queries = reference.encode_query(TEXTS, convert_to_numpy=True)
    documents = reference.encode_document(TEXTS, convert_to_numpy=True)
    assert np.abs(queries - model.encode_queries(TEXTS)).max() < 1e-5
    assert np.abs(documents - model.encode_corpus(TEXTS)).max() < 1e-5


def test_placeholder_instruction_is_saved_for_us_and_warned_for_sentence_transformers(
    tiny_bert_path: Path, tmp_path: Path
) -> None:
    model = AutoModelForEmbedding.from_pretrained(tiny_bert_path, query_instruction="find {} now")
    with pytest.warns(UserWarning, match="placeholder"):
        model.save_pretrained(tmp_path)
    assert AutoModelForEmbedding.from_pretrained(tmp_path).query_instruction == "find {} now"
    prompts = json.loads((tmp_path / "config_sentence_transformers.json").read_text())["prompts"]
    assert "query" not in prompts


def test_sentence_transformers_v6_layout_is_read(tiny_bert_path: Path, tmp_path: Path) -> None:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    AutoModelForEmbedding.from_pretrained(tiny_bert_path, pooling_method="cls").save_pretrained(
        tmp_path / "ours"
    )
    reference = sentence_transformers.SentenceTransformer(
        str(tmp_path / "ours"), device="cpu", prompts={"query": "q: ", "document": "d: "}
    )
    reference.save(str(tmp_path / "st6"))  # rewritten in sentence-transformers' own current layout
    loaded = AutoModelForEmbedding.from_pretrained(tmp_path / "st6")
    assert loaded.pooling_method == "cls"
    assert loaded.query_instruction == "q: "
    assert loaded.document_instruction == "d: "
    np.testing.assert_allclose(
        loaded.encode_queries(TEXTS), reference.encode_query(TEXTS, convert_to_numpy=True), atol=1e-5
    )


def test_unsupported_sentence_transformers_module_is_named(tiny_bert_path: Path, tmp_path: Path) -> None:
    folder = tmp_path / "dense"
    AutoModelForEmbedding.from_pretrained(tiny_bert_path).save_pretrained(folder)
    modules = json.loads((folder / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"})
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ValueError, match=r"modules\.json.*Dense"):
        AutoModelForEmbedding.from_pretrained(folder)


def test_a_reranker_folder_is_not_loaded_as_an_embedder(tiny_bert_path: Path, tmp_path: Path) -> None:
    from retrievals_rag import AutoModelForRanking

    AutoModelForRanking.from_pretrained(tiny_bert_path).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"cross_encoder model, not an embedding model.*AutoModelForRanking"):
        AutoModelForEmbedding.from_pretrained(tmp_path)


def test_missing_folder_and_unreachable_hub_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="model folder not found"):
        AutoModelForEmbedding.from_pretrained(tmp_path / "nope")
    with pytest.raises(OSError, match="not a local folder"):
        AutoModelForEmbedding.from_pretrained("some-org/some-model-that-is-not-here")


def test_a_folder_made_while_it_is_looked_up_is_never_called_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app lists its index versions while an adaptation job makes the adapted model's folder. Before, the
    lookup asked is_dir() and then exists(): a folder made between the two was 'a file; expected a model
    folder', and the versions panel showed that error instead of the running job (a flaky browser test)."""
    from retrievals_rag.models.loading import resolve_model_path

    target = tmp_path / "adapted" / "notes-1"
    real_is_dir = Path.is_dir

    def is_dir_then_made(self: Path) -> bool:
        answer = real_is_dir(self)
        if self == target:
            target.mkdir(parents=True, exist_ok=True)  # the job makes it right after the look
        return answer

    monkeypatch.setattr(Path, "is_dir", is_dir_then_made)
    try:
        resolved = resolve_model_path(target)
    except FileNotFoundError:
        pass  # not there yet when looked at
    else:
        assert resolved == str(target.resolve())
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="is a file; expected a model folder"):
        resolve_model_path(tmp_path / "weights.bin")


def test_pickle_only_weights_are_refused(tiny_bert_path: Path, tmp_path: Path) -> None:
    folder = tmp_path / "pickle"
    shutil.copytree(tiny_bert_path, folder)
    (folder / "model.safetensors").unlink()
    torch.save({}, folder / "pytorch_model.bin")
    with pytest.raises(OSError, match="safetensors"):
        AutoModelForEmbedding.from_pretrained(folder)


# ---------------------------------------------------------------- decoder LLMs


def test_seed_call_runs_verbatim_on_a_llama_shape_model(tiny_llama_path: Path) -> None:
    model = AutoModelForEmbedding.from_pretrained(
        tiny_llama_path,
        pooling_method="last",
        use_fp16=True,
        query_instruction="Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery: ",
        document_instruction="",
    )
    queries = model.encode_queries(["what is dense retrieval", "how"])
    documents = model.encode_corpus(["the cell", "a protein gene study", ""])
    assert queries.shape == (2, 32)
    assert documents.shape == (3, 32)
    assert np.isfinite(queries).all()
    assert np.isfinite(documents).all()


def test_decoder_appends_eos_pads_right_and_pools_the_eos(tiny_llama_path: Path) -> None:
    model = AutoModelForEmbedding.from_pretrained(tiny_llama_path)
    assert model.pooling_method == "last"
    assert model.tokenizer.padding_side == "right"
    eos = model.tokenizer.eos_token_id
    ids = model.tokenize_ids(["dense retrieval", "cell " * 1000])
    assert ids[0][0] == model.tokenizer.bos_token_id
    assert ids[0][-1] == eos
    assert len(ids[1]) == model.max_length
    assert ids[1][-1] == eos  # truncation keeps room for the EOS


def test_decoder_left_and_right_padding_give_the_same_vectors(tiny_llama_path: Path) -> None:
    model = AutoModelForEmbedding.from_pretrained(tiny_llama_path)
    texts = ["dense retrieval of passages for a query", "cell", "the brain study results"]
    with torch.inference_mode():
        right = model(**model.tokenize(texts, padding_side="right"))
        left = model(**model.tokenize(texts, padding_side="left"))
    torch.testing.assert_close(right, left, atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(model.encode(texts), right.numpy(), atol=1e-5)


def test_decoder_saved_folder_round_trips_here_and_in_sentence_transformers(
    tiny_llama_path: Path, tmp_path: Path
) -> None:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    model = AutoModelForEmbedding.from_pretrained(tiny_llama_path, query_instruction=SEED_QUERY_INSTRUCTION)
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForEmbedding.from_pretrained(tmp_path)
    assert reloaded.settings == model.settings
    queries = ["what is dense retrieval", "how"]
    np.testing.assert_allclose(reloaded.encode_queries(queries), model.encode_queries(queries), atol=1e-6)
    reference = sentence_transformers.SentenceTransformer(str(tmp_path), device="cpu")
    assert (
        np.abs(reference.encode_query(queries, convert_to_numpy=True) - model.encode_queries(queries)).max()
        < 1e-5
    )


def test_weighted_mean_on_a_decoder(tiny_llama_path: Path) -> None:
    model = AutoModelForEmbedding.from_pretrained(tiny_llama_path, pooling_method="weighted_mean")
    assert model.settings.append_eos is False
    assert model.tokenize_ids(["cell"])[0][-1] != model.tokenizer.eos_token_id
    assert model.encode(["cell", "the brain"]).shape == (2, 32)


# ---------------------------------------------------------------- the packaged MiniLM (real weights)


@pytest.mark.slow
def test_packaged_minilm_matches_sentence_transformers(minilm_path: Path) -> None:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    from retrievals_rag.evaluation.beir import document_text, load_corpus

    from ..conftest import SCIFACT_SUBSET

    documents = [document_text(d) for d in list(load_corpus(SCIFACT_SUBSET / "corpus.jsonl").values())[:64]]
    model = AutoModelForEmbedding.from_pretrained(minilm_path, device="cpu")
    assert model.pooling_method == "mean"
    assert model.normalize_embeddings is True
    assert model.max_length == 256
    reference = sentence_transformers.SentenceTransformer(str(minilm_path), device="cpu")
    ours = model.encode_corpus(documents)
    theirs = reference.encode(documents, convert_to_numpy=True)
    assert np.abs(ours - theirs).max() < 1e-5
