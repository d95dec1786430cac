"""Tests of the cross-encoder (AutoModelForRanking) on tiny BERTs built at test time."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from retrievals_rag import AutoModelForRanking
from retrievals_rag.models.config import CONFIG_FILE_NAME
from retrievals_rag.models.ranking import RerankResult

PAIRS = [
    ("what is a cell", "the cell is the unit of the human brain"),
    ("cancer risk", "patients with a gene study"),
    ("", "the protein"),
    ("how", ""),
    ("treatment effect in patients", "results " * 20),
]
FILLER = "the a of and to in is for on with by from at as it be are was this that " * 4


@pytest.fixture(scope="module")
def cross_encoder_path(tmp_path_factory: pytest.TempPathFactory, tiny_bert_path: Path) -> Path:
    """A tiny BertForSequenceClassification folder (saved by transformers) whose scores vary visibly."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("tiny-cross-encoder")
    # A wider initialisation than BERT's 0.02, so that scores depend visibly on the text.
    config = BertConfig.from_pretrained(tiny_bert_path, num_labels=1, initializer_range=0.3)
    BertForSequenceClassification(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_bert_path).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def ranker(cross_encoder_path: Path) -> AutoModelForRanking:
    model = AutoModelForRanking.from_pretrained(cross_encoder_path, device="cpu")
    assert isinstance(model, AutoModelForRanking)
    return model


def test_a_bare_encoder_gets_a_fresh_head_with_a_warning(tiny_bert_path: Path) -> None:
    with pytest.warns(UserWarning, match=r"classifier\.(bias|weight)"):
        model = AutoModelForRanking.from_pretrained(tiny_bert_path, device="cpu")
    assert isinstance(model, AutoModelForRanking)
    assert model.num_labels == 1
    assert model.max_length == 128
    assert model.settings.max_windows == 8
    assert model.model.config._attn_implementation == "sdpa"
    assert model.device == torch.device("cpu")


def test_scores_are_python_floats_in_input_order(ranker: AutoModelForRanking) -> None:
    scores = ranker.compute_score(PAIRS)
    assert isinstance(scores, list) and all(type(score) is float for score in scores)
    one_by_one = [ranker.compute_score(pair) for pair in PAIRS]
    assert all(type(score) is float for score in one_by_one)
    np.testing.assert_allclose(scores, one_by_one, atol=1e-5)
    assert np.ptp(scores) > 0.1  # the fixture's initialisation makes scores differ


def test_batching_does_not_change_scores(ranker: AutoModelForRanking) -> None:
    reference = ranker.compute_score(PAIRS)
    np.testing.assert_allclose(
        ranker.compute_score(PAIRS, token_budget=8, batch_size=2), reference, atol=1e-5
    )
    np.testing.assert_allclose(ranker.compute_score(PAIRS, token_budget=100_000), reference, atol=1e-5)


def test_raw_logit_is_the_score_and_normalize_is_its_sigmoid(ranker: AutoModelForRanking) -> None:
    inputs = ranker.tokenizer(PAIRS[0][0], PAIRS[0][1], return_tensors="pt")
    with torch.no_grad():
        logit = ranker.model(**inputs).logits[0, 0].item()
    assert ranker.compute_score(PAIRS[0]) == pytest.approx(logit, abs=1e-5)
    assert ranker.compute_score(PAIRS[0], normalize=True) == pytest.approx(1 / (1 + np.exp(-logit)), abs=1e-6)


def test_tokenize_pairs_is_the_tokenizers_own_pair_encoding(ranker: AutoModelForRanking) -> None:
    queries, documents = zip(*PAIRS, strict=True)
    expected = ranker.tokenizer(list(queries), list(documents))
    for (ids, types), expected_ids, expected_types in zip(
        ranker.tokenize_pairs(PAIRS), expected["input_ids"], expected["token_type_ids"], strict=True
    ):
        assert ids == expected_ids
        assert types == expected_types


@pytest.mark.slow
def test_scores_equal_sentence_transformers_on_our_saved_folder(
    ranker: AutoModelForRanking, tmp_path: Path
) -> None:
    from sentence_transformers import CrossEncoder

    ranker.save_pretrained(tmp_path)
    theirs = CrossEncoder(str(tmp_path), device="cpu")
    assert theirs.max_seq_length == ranker.max_length
    np.testing.assert_allclose(ranker.compute_score(PAIRS), theirs.predict(PAIRS), atol=1e-5)
    np.testing.assert_allclose(
        ranker.compute_score(PAIRS, normalize=True),
        theirs.predict(PAIRS, activation_fn=torch.nn.Sigmoid()),
        atol=1e-6,
    )
    ranked = theirs.rank(PAIRS[0][0], [document for _, document in PAIRS])
    ours = ranker.rerank(PAIRS[0][0], [document for _, document in PAIRS])
    assert [result.index for result in ours] == [item["corpus_id"] for item in ranked]


@pytest.mark.slow
def test_scores_equal_sentence_transformers_on_a_fresh_head_saved_by_us(
    tiny_bert_path: Path, tmp_path: Path
) -> None:
    from sentence_transformers import CrossEncoder

    with pytest.warns(UserWarning, match="randomly initialised"):
        fresh = AutoModelForRanking.from_pretrained(
            tiny_bert_path, device="cpu", max_length=64, max_windows=1
        )
    fresh.save_pretrained(tmp_path)
    # Longer than max_length: with one window ours truncates the document as theirs does.
    pairs = [*PAIRS, ("cell", "gene cancer " * 100)]
    theirs = CrossEncoder(str(tmp_path), device="cpu")
    np.testing.assert_allclose(fresh.compute_score(pairs), theirs.predict(pairs), atol=1e-5)


def test_rerank_sorts_by_score_and_keeps_indices(ranker: AutoModelForRanking) -> None:
    query = "cancer risk"
    documents = [document for _, document in PAIRS]
    results = ranker.rerank(query, documents)
    scores = ranker.compute_score([(query, document) for document in documents])
    assert [result.score for result in results] == sorted(scores, reverse=True)
    for result in results:
        assert isinstance(result, RerankResult)
        assert result.document == documents[result.index]
        assert result.score == pytest.approx(scores[result.index], abs=1e-6)
    assert ranker.rerank(query, documents, top_k=2) == results[:2]


def test_edge_cases(ranker: AutoModelForRanking) -> None:
    assert ranker.compute_score([]) == []
    assert ranker.rerank("query", []) == []
    assert ranker.rerank("query", ["a", "b"], top_k=0) == []
    assert len(ranker.rerank("query", ["a", "b"], top_k=10)) == 2
    assert np.isfinite(ranker.compute_score(("", "")))
    assert len(ranker.rerank("", ["", "x"])) == 2
    with pytest.raises(ValueError, match="top_k"):
        ranker.rerank("query", ["a"], top_k=-1)


def test_non_string_input_names_its_index(ranker: AutoModelForRanking) -> None:
    with pytest.raises(TypeError, match=r"pairs\[1\]\[1\] is int"):
        ranker.compute_score([("q", "d"), ("q", 3)])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"documents\[1\] is NoneType"):
        ranker.rerank("q", ["d", None])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="query is int"):
        ranker.rerank(3, ["d"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="list of strings"):
        ranker.rerank("q", "a single string")


def _window_scores(model: AutoModelForRanking, query: str, document: str) -> list[float]:
    """Each window's score by a separate forward pass, to check the ranker against."""
    query_ids = model.tokenizer(query, add_special_tokens=False)["input_ids"]
    document_ids = model.tokenizer(document, add_special_tokens=False)["input_ids"]
    scores = []
    for ids, types in model._pair_rows(query_ids, document_ids, model.settings.max_windows):
        with torch.no_grad():
            output = model(
                torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long), torch.tensor([types])
            )
        scores.append(float(output[0]))
    return scores


def test_a_long_document_is_scored_by_its_best_window_even_at_its_end(cross_encoder_path: Path) -> None:
    windowed = AutoModelForRanking.from_pretrained(cross_encoder_path, device="cpu", max_length=24)
    truncated = AutoModelForRanking.from_pretrained(
        cross_encoder_path, device="cpu", max_length=24, max_windows=1
    )
    query = "cancer"
    # Find a tail whose window beats every window of filler, so the document's relevant part is its end.
    for word in ("cell", "study", "web", "answer", "gene", "model", "human"):
        document = "the " * 60 + (word + " ") * 8
        window_scores = _window_scores(windowed, query, document)
        if len(window_scores) > 2 and int(np.argmax(window_scores)) == len(window_scores) - 1:
            break
    else:
        pytest.fail("no tail made the last window the best; change the candidates")
    assert windowed.compute_score((query, document)) == pytest.approx(max(window_scores), abs=1e-5)
    assert truncated.compute_score((query, document)) == pytest.approx(window_scores[0], abs=1e-5)
    assert windowed.compute_score((query, document)) > truncated.compute_score((query, document))
    assert max(result.score for result in windowed.rerank(query, [document])) == pytest.approx(
        max(window_scores), abs=1e-5
    )


def test_instructions_frame_every_window(cross_encoder_path: Path) -> None:
    model = AutoModelForRanking.from_pretrained(
        cross_encoder_path,
        device="cpu",
        max_length=24,
        query_instruction="query: ",
        document_instruction="passage: {} end",
    )
    tokenizer = model.tokenizer
    query_ids = tokenizer("cell", add_special_tokens=False)["input_ids"]
    document_ids = tokenizer(FILLER, add_special_tokens=False)["input_ids"]
    rows = model._pair_rows(query_ids, document_ids, max_windows=8)
    assert len(rows) > 1
    for ids, _ in rows:
        text = tokenizer.decode(ids)
        assert text.startswith("[CLS] query : cell [SEP] passage :")
        assert text.endswith("end [SEP]")
        assert len(ids) <= 24


def test_save_and_reload_keep_the_settings(cross_encoder_path: Path, tmp_path: Path) -> None:
    model = AutoModelForRanking.from_pretrained(
        cross_encoder_path,
        device="cpu",
        max_length=48,
        query_instruction="query: ",
        document_instruction="",
        window_stride=5,
        max_windows=3,
    )
    with pytest.warns(UserWarning, match="instructions"):
        model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert not list(tmp_path.glob("*.bin"))
    saved = json.loads((tmp_path / CONFIG_FILE_NAME).read_text())
    assert saved["model_kind"] == "cross_encoder"
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["sentence_transformers"]["activation_fn"] == "torch.nn.modules.linear.Identity"
    reloaded = AutoModelForRanking.from_pretrained(tmp_path, device="cpu")
    assert reloaded.settings == model.settings
    np.testing.assert_allclose(reloaded.compute_score(PAIRS), model.compute_score(PAIRS), atol=1e-6)
    overridden = AutoModelForRanking.from_pretrained(tmp_path, device="cpu", max_windows=1)
    assert overridden.settings.max_windows == 1
    assert overridden.settings.query_instruction == "query: "


def test_two_labels_score_is_the_log_odds_of_label_one(tiny_bert_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = AutoModelForRanking.from_pretrained(tiny_bert_path, device="cpu", num_labels=2)
    inputs = model.tokenizer(PAIRS[0][0], PAIRS[0][1], return_tensors="pt")
    with torch.no_grad():
        logits = model.model(**inputs).logits[0]
    assert model.compute_score(PAIRS[0]) == pytest.approx(float(logits[1] - logits[0]), abs=1e-5)
    assert model.compute_score(PAIRS[0], normalize=True) == pytest.approx(
        float(torch.softmax(logits, dim=0)[1]), abs=1e-6
    )
    with pytest.raises(ValueError, match="num_labels"):
        AutoModelForRanking.from_pretrained(tiny_bert_path, device="cpu", num_labels=3)


def test_forward_keeps_gradients_for_training(ranker: AutoModelForRanking) -> None:
    ids, types = ranker.tokenize_pairs(PAIRS[:1])[0]
    scores = ranker(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long), torch.tensor([types]))
    assert scores.shape == (1,)
    assert scores.requires_grad


def test_progress_counts_each_pair_once_as_its_batches_finish(
    cross_encoder_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from retrievals_rag.models import base

    updates: list[int] = []
    monkeypatch.setattr(base.Progress, "update", lambda self, count: updates.append(count))
    windowed = AutoModelForRanking.from_pretrained(cross_encoder_path, device="cpu", max_length=24)
    pairs = [("cancer", "the " * 60 + "gene " * 8), ("cell", "a short one")] * 5  # long ones have 3+ windows

    windowed.compute_score(pairs, batch_size=2, show_progress_bar=True)

    assert sum(updates) == len(pairs)  # each pair once, when its last window is scored
    assert len([count for count in updates if count]) > 1  # per batch, not once at the end
