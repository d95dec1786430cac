"""Label-free adaptation: the whole job on a tiny random BERT and 40 SciFact passages, bad input, cancel, resume."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from retrievals_rag.training.adapt import adapt_embedder
from retrievals_rag.training.adapt_settings import (
    ADAPT_REPORT_FILE,
    MIN_PASSAGES,
    AdaptProgress,
    AdaptSettings,
    questions_file,
)

from ..conftest import SCIFACT_SUBSET


def scifact_passages(count: int = 40) -> dict[str, str]:
    lines = (SCIFACT_SUBSET / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[:count]
    records = [json.loads(line) for line in lines]
    return {record["_id"]: f"{record['title']} {record['text']}"[:400] for record in records}


# small and quick: 40 passages, 1 epoch, batches of 8, 64-token passages
FAST = AdaptSettings(max_passages=30, holdout_fraction=0.2, batch_size=8, max_length=64, learning_rate=1e-3)


class Recorder:
    """Keeps every progress report; raises at the ``stop_at`` stage's ``stop_after``-th report."""

    def __init__(self, stop_at: str | None = None, stop_after: int = 1) -> None:
        self.reports: list[AdaptProgress] = []
        self.stop_at = stop_at
        self.stop_after = stop_after

    def __call__(self, step: AdaptProgress) -> None:
        self.reports.append(step)
        if (
            step.stage == self.stop_at
            and sum(r.stage == self.stop_at for r in self.reports) >= self.stop_after
        ):
            raise KeyboardInterrupt(f"cancelled at {step.stage}")


def sibling_names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.parent.iterdir())


def test_cropping_adaptation_saves_a_loadable_model_with_its_report_and_verdict(
    tmp_path: Path, tiny_bert_path: Path
) -> None:
    from retrievals_rag.models.embedding import AutoModelForEmbedding

    output = tmp_path / "adapted"
    recorder = Recorder()

    report = adapt_embedder(
        scifact_passages(), output, base_model=tiny_bert_path, settings=FAST, progress=recorder
    )

    assert report.output_dir == output.resolve()
    assert report.passages_used == 30 and report.questions == 30  # one span per sampled passage
    assert report.holdout_questions == 6 and report.train_questions <= 24
    assert report.verdict is not None
    for side in ("before", "after"):
        assert {"nDCG@10", "MRR@10", "Recall@100"} <= set(report.verdict[side])
    assert report.verdict["before"] != report.verdict["after"]  # lr 1e-3 moves a random model
    assert report.loss == "infonce" and report.generator == "cropping"
    assert set(report.timings) >= {"generate", "mine", "train", "evaluate", "save"}
    assert report.questions_per_second > 0
    saved = json.loads((output / ADAPT_REPORT_FILE).read_text())
    assert saved["verdict"] == report.verdict and saved["questions"] == 30
    assert questions_file(output, "cropping").is_file()
    assert report.verdict["data"] == "6 held-out generated questions, each retrieving from 30 passages"
    for name in (
        "verdict.json",
        "training_summary.json",
    ):  # they name the model's folder, not the staging one
        assert ".adapt-" not in (output / name).read_text()
    assert json.loads((output / "verdict.json").read_text()) == report.verdict
    assert (output / "adapt_data" / "holdout" / "qrels" / "test.tsv").is_file()
    assert sibling_names(output) == ["adapted"]  # no staging folder left beside it
    stages = [step.stage for step in recorder.reports]
    assert stages.index("generate") < stages.index("mine") < stages.index("train") < stages.index("save")
    assert recorder.reports[-1] == AdaptProgress("save", 1, 1, f"saved to {output}")

    model = AutoModelForEmbedding.from_pretrained(output, device="cpu")
    vectors = model.encode_corpus(["cell protein"])
    assert vectors.shape == (1, 32)

    # the inverse cloze task (span_removal 0.9 by default): most positives lost their span, none was emptied
    records = [json.loads(line) for line in (output / "adapt_data/train.jsonl").read_text().splitlines()]
    passages = set(scifact_passages().values())
    whole = [record for record in records if record["positive"][0] in passages]
    assert len(whole) < len(records) / 2
    for record in records:
        assert record["positive"][0].strip()
        if record not in whole:
            assert record["query"] not in record["positive"][0]


def test_a_model_read_to_fewer_tokens_than_the_question_default_adapts(
    tmp_path: Path, tiny_bert_path: Path
) -> None:
    """max_length 32 (under query_max_length's default 64): questions are cut at 32 tokens too. Before, adapt
    passed 64 to the trainer, which refuses questions longer than the model reads."""
    from dataclasses import replace

    settings = replace(FAST, max_length=32)
    assert settings.question_tokens == 32 and FAST.question_tokens == 64

    report = adapt_embedder(
        scifact_passages(), tmp_path / "adapted", base_model=tiny_bert_path, settings=settings
    )

    assert report.verdict is not None and report.train_questions > 0


def test_the_span_is_cut_out_of_its_positive_with_the_passage_s_own_whitespace() -> None:
    import random

    from retrievals_rag.data.passage_queries import CroppingGenerator, HeadingGenerator, cut_span

    passage = "Title.\nInsulin  lowers\nblood sugar. It acts fast."
    assert cut_span("Insulin lowers blood sugar.", passage) == "Title.\n It acts fast."
    assert cut_span("not in the passage", "Something else entirely.") == "Something else entirely."
    assert (
        cut_span("Whole passage.", "Whole passage.") == "Whole passage."
    )  # nothing would be left: kept whole
    always, never = CroppingGenerator(span_removal=1.0), CroppingGenerator(span_removal=0.0)
    rng = random.Random(0)
    assert always.training_positive("Insulin lowers blood sugar.", passage, rng) == "Title.\n It acts fast."
    assert never.training_positive("Insulin lowers blood sugar.", passage, rng) == passage
    state = rng.getstate()
    assert HeadingGenerator().training_positive("Title.", passage, rng) == passage
    assert rng.getstate() == state  # only the cropping draws: other generators leave the job's draws alone
    with pytest.raises(ValueError, match="span_removal"):
        AdaptSettings(span_removal=1.5)
    with pytest.raises(ValueError, match="span_removal must be in"):
        CroppingGenerator(span_removal=-0.1)


@pytest.mark.parametrize(
    ("passages", "message"),
    [
        ([], "the corpus is empty"),
        (["   ", "\n"], "the corpus is empty"),
        (["one passage"], f"has 1 distinct passage.*at least {MIN_PASSAGES}"),
        (["same text"] * 10, f"has 1 distinct passage.*at least {MIN_PASSAGES}"),
    ],
)
def test_an_empty_or_too_small_corpus_is_refused_before_anything_is_written(
    tmp_path: Path, passages: list[str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        adapt_embedder(passages, tmp_path / "out", settings=FAST)

    assert not (tmp_path / "out").exists()


def test_settings_are_checked_when_made() -> None:
    with pytest.raises(ValueError, match="holdout_fraction"):
        AdaptSettings(holdout_fraction=1.0)
    with pytest.raises(ValueError, match="openai_base_url"):
        AdaptSettings(generator="openai")
    with pytest.raises(ValueError, match="generator must be"):
        AdaptSettings(generator="t5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_passages"):
        AdaptSettings(max_passages=0)
    with pytest.raises(ValueError, match="base_weight"):
        AdaptSettings(base_weight=1.0)
    with pytest.raises(ValueError, match=r"question_prompt must contain the \{passage\} placeholder"):
        AdaptSettings(generator="smollm2", question_prompt="Ask a question.")
    with pytest.raises(ValueError, match="cropping asks no model"):
        AdaptSettings(question_prompt="Ask about {passage}")
    with pytest.raises(ValueError, match="reply_form must be 'question' or 'any'"):
        AdaptSettings(reply_form="claim")  # type: ignore[arg-type]


def test_base_weight_averages_the_trained_weights_with_the_start_before_the_verdict(
    tmp_path: Path, tiny_bert_path: Path
) -> None:
    import dataclasses

    from safetensors.torch import load_file

    passages = scifact_passages()
    trained = adapt_embedder(passages, tmp_path / "trained", base_model=tiny_bert_path, settings=FAST)
    averaged = adapt_embedder(
        passages,
        tmp_path / "averaged",
        base_model=tiny_bert_path,
        settings=dataclasses.replace(FAST, base_weight=0.25),
    )

    start = load_file(tiny_bert_path / "model.safetensors")
    ends = [load_file(tmp_path / name / "model.safetensors") for name in ("trained", "averaged")]
    moved = 0
    for name, full in ends[0].items():
        base = start["bert." + name if "bert." + name in start else name]
        assert torch.allclose(ends[1][name], 0.25 * base + 0.75 * full, atol=1e-6), name
        moved += not torch.allclose(full, base)
    assert moved > 10  # the trained weights did move
    assert averaged.verdict is not None and trained.verdict is not None
    assert averaged.verdict["before"] == trained.verdict["before"]
    assert averaged.verdict["after"] != trained.verdict["after"]  # the averaged model is the one judged


def test_cancelled_training_leaves_the_previous_model_and_resumes_without_generating_twice(
    tmp_path: Path, tiny_bert_path: Path
) -> None:
    output = tmp_path / "adapted"
    output.mkdir()
    (output / "model.safetensors").write_text("the previous model")
    passages = scifact_passages()
    settings = AdaptSettings(
        max_passages=30, holdout_fraction=0.2, batch_size=8, max_length=64, generation_batch_size=8
    )

    with pytest.raises(KeyboardInterrupt):  # cancelled after the first batch of questions is stored
        adapt_embedder(
            passages, output, base_model=tiny_bert_path, settings=settings, progress=Recorder("generate")
        )
    stored = questions_file(output, "cropping").read_text().splitlines()
    assert len(stored) == 8
    with pytest.raises(KeyboardInterrupt):  # cancelled during training
        adapt_embedder(
            passages, output, base_model=tiny_bert_path, settings=settings, progress=Recorder("train", 2)
        )

    assert (output / "model.safetensors").read_text() == "the previous model"
    assert sorted(path.name for path in output.iterdir()) == [
        "generated_questions-cropping.jsonl",
        "model.safetensors",
    ]
    assert sibling_names(output) == ["adapted"]

    recorder = Recorder()
    report = adapt_embedder(passages, output, base_model=tiny_bert_path, settings=settings, progress=recorder)

    generate = [step for step in recorder.reports if step.stage == "generate"]
    assert generate == []  # every passage was done by the runs before
    lines = [json.loads(line) for line in questions_file(output, "cropping").read_text().splitlines()]
    assert len(lines) == 30 == len({line["passage_hash"] for line in lines})
    assert report.questions == 30 and report.questions_per_second == 0.0
    assert not (output / "model.safetensors").read_text(errors="replace").startswith("the previous")


@pytest.mark.filterwarnings("ignore:.*randomly initialised")
def test_a_teacher_labels_with_margin_mse_and_drops_false_negatives(
    tmp_path: Path, tiny_bert_path: Path
) -> None:
    from retrievals_rag.models.ranking import AutoModelForRanking

    teacher = tmp_path / "teacher"
    AutoModelForRanking.from_pretrained(tiny_bert_path, device="cpu").save_pretrained(teacher)
    settings = AdaptSettings(
        max_passages=30, holdout_fraction=0.2, batch_size=8, max_length=64, teacher=str(teacher),
        false_negative_margin=0.0,
    )  # fmt: skip

    report = adapt_embedder(
        scifact_passages(), tmp_path / "out", base_model=tiny_bert_path, settings=settings
    )

    assert report.loss == "margin_mse"
    records = [
        json.loads(line) for line in (tmp_path / "out/adapt_data/train.jsonl").read_text().splitlines()
    ]
    assert records and all(len(r["negative_scores"]) == len(r["negative"]) for r in records)
    for record in records:  # every kept negative scored below its positive by the teacher
        assert max(record["negative_scores"]) < min(record["positive_scores"])
    assert report.dropped["false_negative"] + sum(len(r["negative"]) for r in records) == 3 * (
        report.train_questions + report.dropped["no_negative"]
    )


@pytest.mark.parametrize("given_as", ["name", "folder"])
def test_the_query_likelihood_teacher_labels_in_the_student_s_units(
    tmp_path: Path, tiny_bert_path: Path, tiny_llama_path: Path, given_as: str
) -> None:
    """``--teacher query-likelihood`` (the chat model) and an LLM ranker folder saved with query-likelihood
    scoring both label in log-probabilities rescaled to the student's margins."""
    import numpy as np

    from retrievals_rag.llm.query_likelihood import query_likelihood_ranker
    from retrievals_rag.models.embedding import AutoModelForEmbedding

    length = FAST.max_length + FAST.query_max_length
    ranker = query_likelihood_ranker(tiny_llama_path, max_length=length, device="cpu")
    if given_as == "folder":
        ranker.save_pretrained(tmp_path / "likelihood-ranker")
        teacher = str(tmp_path / "likelihood-ranker")
    else:
        teacher = "query-likelihood"
    settings = dataclasses.replace(FAST, teacher=teacher, chat_model=str(tiny_llama_path), num_negatives=2)
    recorder = Recorder()
    report = adapt_embedder(
        scifact_passages(), tmp_path / "out", base_model=tiny_bert_path, settings=settings, progress=recorder
    )

    assert report.loss == "margin_mse"
    records = [
        json.loads(line) for line in (tmp_path / "out/adapt_data/train.jsonl").read_text().splitlines()
    ]
    assert len(records) == report.train_questions >= 2
    labelling = [(step.done, step.total) for step in recorder.reports if step.stage == "label"]
    pairs = labelling[0][1]
    assert labelling[0][0] == 0 and labelling[-1] == (pairs, pairs) and pairs >= 3 * len(records)
    student = AutoModelForEmbedding.from_pretrained(tiny_bert_path, max_length=64, device="cpu")
    teacher_margins, student_margins = [], []
    for record in records:
        raw = ranker.compute_score(
            [(record["query"], text) for text in (*record["positive"], *record["negative"])]
        )
        scaled = [*record["positive_scores"], *record["negative_scores"]]
        # one positive factor for every pair: the teacher's order kept, its false negatives dropped
        assert np.allclose(np.array(scaled) / np.array(raw), scaled[0] / raw[0], rtol=1e-4)
        assert scaled[0] / raw[0] > 0 and max(raw[1:]) < raw[0]
        vectors = student.encode(
            [record["query"], *record["positive"], *record["negative"]], normalize_embeddings=True
        )
        cosines = vectors[1:] @ vectors[0]
        teacher_margins += [scaled[0] - value for value in scaled[1:]]
        student_margins.append(float(cosines[0] - np.mean(cosines[1:])))
    # the typical margin is the student's (records' mean positive - mean negative margins)
    record_teacher = [np.mean(r["positive_scores"]) - np.mean(r["negative_scores"]) for r in records]
    assert np.mean(np.abs(record_teacher)) == pytest.approx(np.mean(np.abs(student_margins)), rel=1e-3)


def test_the_hybrid_teacher_labels_with_the_fused_rank_in_the_student_s_units(
    tmp_path: Path, tiny_bert_path: Path
) -> None:
    """``--teacher hybrid``: BM25 fused with the starting embedder over the training passages scores every pair,
    negatives it ranks above their positive are dropped, and its RRF margins are rescaled to the student's."""
    import numpy as np

    from retrievals_rag.models.embedding import AutoModelForEmbedding
    from retrievals_rag.retrieval.hybrid_scorer import HybridPairScorer

    settings = dataclasses.replace(FAST, teacher="hybrid", num_negatives=2)
    recorder = Recorder()
    report = adapt_embedder(
        scifact_passages(), tmp_path / "out", base_model=tiny_bert_path, settings=settings, progress=recorder
    )

    assert report.loss == "margin_mse" and report.train_questions >= 2
    records = [
        json.loads(line) for line in (tmp_path / "out/adapt_data/train.jsonl").read_text().splitlines()
    ]
    labelling = [(step.done, step.total) for step in recorder.reports if step.stage == "label"]
    assert labelling[0][0] == 0 and labelling[-1][0] == labelling[-1][1] >= 3 * len(records)
    student = AutoModelForEmbedding.from_pretrained(tiny_bert_path, max_length=64, device="cpu")
    pool = list(dict.fromkeys(text for r in records for text in (*r["positive"], *r["negative"])))
    scorer = HybridPairScorer(student, pool)
    student_margins = []
    for record in records:
        scaled = [*record["positive_scores"], *record["negative_scores"]]
        assert max(record["negative_scores"]) < min(record["positive_scores"])  # false negatives dropped
        assert min(scaled) >= 0  # RRF scores, 0 for a passage neither ranking has
        texts = [*record["positive"], *record["negative"]]
        cosines = scorer.dense_scores([(record["query"], text) for text in texts])
        student_margins.append(cosines[0] - float(np.mean(cosines[1:])))
    record_teacher = [np.mean(r["positive_scores"]) - np.mean(r["negative_scores"]) for r in records]
    assert np.mean(np.abs(record_teacher)) == pytest.approx(np.mean(np.abs(student_margins)), rel=1e-3)


def test_a_teacher_that_is_an_embedder_is_refused(tmp_path: Path, tiny_bert_path: Path) -> None:
    from retrievals_rag.models.embedding import AutoModelForEmbedding

    embedder = tmp_path / "embedder"
    AutoModelForEmbedding.from_pretrained(tiny_bert_path, device="cpu").save_pretrained(embedder)
    settings = AdaptSettings(max_passages=20, batch_size=8, max_length=64, teacher=str(embedder))

    with pytest.raises(ValueError, match="is not a reranker folder"):
        adapt_embedder(scifact_passages(20), tmp_path / "out", base_model=tiny_bert_path, settings=settings)
    assert sibling_names(tmp_path / "out") == ["embedder", "out"]


def test_a_chat_model_that_answers_garbage_stops_the_job_and_leaves_the_folder(
    tmp_path: Path, tiny_bert_path: Path, tiny_chat_path: Path
) -> None:
    from retrievals_rag.llm.base import GenerationError

    output = tmp_path / "adapted"
    output.mkdir()
    (output / "model.safetensors").write_text("the previous model")
    settings = AdaptSettings(
        generator="smollm2", chat_model=str(tiny_chat_path), device="cpu", max_new_tokens=4, max_passages=30
    )

    with pytest.raises(
        GenerationError, match=r"TransformersChat\(model_path=.*gave no usable question for 20"
    ):
        adapt_embedder(scifact_passages(), output, base_model=tiny_bert_path, settings=settings)

    assert (output / "model.safetensors").read_text() == "the previous model"
    assert questions_file(output, "smollm2").read_text() == ""  # the garbage streak is not stored
    assert sibling_names(output) == ["adapted"]


def test_title_adaptation_trains_each_heading_against_texts_without_headings(
    tmp_path: Path, tiny_bert_path: Path
) -> None:
    lines = (SCIFACT_SUBSET / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[:40]
    records = [json.loads(line) for line in lines]
    bodies = {record["_id"]: record["text"][:400].strip() for record in records}
    passages = {record["_id"]: f"{record['title']}\n{bodies[record['_id']]}" for record in records}
    output = tmp_path / "adapted"

    report = adapt_embedder(
        passages, output, base_model=tiny_bert_path, settings=dataclasses.replace(FAST, generator="title")
    )

    assert report.generator == "title" and report.questions == 30 and report.holdout_questions == 6
    titles = {record["title"] for record in records}
    trained = [json.loads(line) for line in (output / "adapt_data/train.jsonl").read_text().splitlines()]
    assert trained and all(record["query"] in titles for record in trained)
    for record in trained:  # positives and negatives alike are texts without their titles
        assert set(record["positive"]) | set(record["negative"]) <= set(bodies.values())
    held_out = [
        json.loads(line) for line in (output / "adapt_data/holdout/corpus.jsonl").read_text().splitlines()
    ]
    assert {document["text"] for document in held_out} <= set(bodies.values())


def test_the_title_generator_samples_passages_with_headings_and_needs_enough_of_them(
    tmp_path: Path, tiny_bert_path: Path
) -> None:
    prose = {
        f"p{index}": f"plain text number {index} with no heading, long enough to be a passage."
        for index in range(30)
    }
    titled = {
        f"t{index}": f"Title {index}\nThe text under title {index}, longer than its title."
        for index in range(8)
    }

    report = adapt_embedder(
        {**prose, **titled},
        tmp_path / "adapted",
        base_model=tiny_bert_path,
        settings=dataclasses.replace(FAST, generator="title", max_passages=8, holdout_fraction=0.25),
    )
    assert report.passages_used == 8 and report.dropped["empty"] == 0  # the sample holds the 8 titled ones

    with pytest.raises(ValueError, match="4 of the 34 passages open with a title or heading"):
        adapt_embedder(
            {**prose, **dict(list(titled.items())[:4])},
            tmp_path / "none",
            base_model=tiny_bert_path,
            settings=dataclasses.replace(FAST, generator="title"),
        )
    assert not (tmp_path / "none").exists()
