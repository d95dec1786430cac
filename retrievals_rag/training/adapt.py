"""Adapt an embedder to a corpus without labels: generated questions, mined negatives, a before / after verdict.

The recipe (GPL, Wang et al. 2022, "GPL: Generative Pseudo Labeling for Unsupervised Domain Adaptation of Dense
Retrieval", with the generator and the teacher made optional):

1. **generate**: a seeded sample of ``max_passages`` passages gets questions (:mod:`retrievals_rag.data.generation`:
   spans of the passage, its heading, SmolLM2, or an OpenAI-compatible endpoint), filtered and appended to
   ``output_dir/generated_questions-<generator>.jsonl`` as they come, so a rerun resumes; with headings
   (``title``), every passage is seen without its heading from then on;
2. the questions of a ``holdout_fraction`` of those passages are held out for the verdict;
3. **mine**: hard negatives for each training question from the current embedder's ranking of the whole corpus
   (:func:`~retrievals_rag.retrieval.mining.mine_hard_negatives`; the passage a question was written for is its
   positive, and a passage with the same text is never a negative);
4. **label**: with a ``teacher`` (a cross-encoder, LLM ranker or ColBERT folder of ours; ``"query-likelihood"``:
   the chat model's log-probability of the question given the passage, UPR; or ``"hybrid"``: the passage's
   reciprocal-rank-fusion score when BM25 and the starting embedder rank the training passages), every (question,
   passage) pair is scored, negatives that the teacher scores within ``false_negative_margin`` of the positive
   (or above it) are dropped as likely false negatives, and training uses ``margin_mse`` on the teacher's
   scores (query-likelihood's and hybrid's rescaled to the starting model's typical margin); without one, InfoNCE;
5. **train** with :func:`~retrievals_rag.training.run.train_embedding`, which judges the starting and the trained
   model on the held-out questions, each retrieving from all the sampled passages;
6. **save**: the model folder (what ``AutoModelForEmbedding.from_pretrained`` loads) with ``adapt_report.json``,
   ``verdict.json`` and the generated data (``adapt_data/``) beside the weights.

Everything but the questions file is written into a temporary folder beside ``output_dir`` and moved in when
complete; on an error, or when ``progress`` raises to cancel, that folder is removed and whatever ``output_dir``
held before (a previous model included) is left as it was. Example::

    from retrievals_rag.training.adapt import adapt_embedder
    from retrievals_rag.training.adapt_settings import AdaptSettings

    report = adapt_embedder(
        {"d1": "Insulin lowers blood sugar...", "d2": "..."},
        "runs/adapted",
        settings=AdaptSettings(generator="cropping", epochs=1),
        progress=lambda step: print(step.stage, step.done, step.total),
    )
    print(report.verdict["after"]["nDCG@10"])
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrievals_rag.training.adapt_settings import (
    ADAPT_REPORT_FILE,
    HYBRID_TEACHER,
    MIN_PASSAGES,
    QUERY_LIKELIHOOD_TEACHER,
    AdaptProgress,
    AdaptReport,
    AdaptSettings,
    Stage,
    questions_file,
)

if TYPE_CHECKING:
    from retrievals_rag.data.generation import GeneratedQuestion, QuestionGenerator

__all__ = ["adapt_embedder"]

logger = logging.getLogger(__name__)

DATA_FOLDER = "adapt_data"


def adapt_embedder(
    passages: Sequence[str] | Mapping[str, str],
    output_dir: str | os.PathLike[str],
    *,
    base_model: str | os.PathLike[str] | None = None,
    settings: AdaptSettings = AdaptSettings(),
    progress: Callable[[AdaptProgress], None] | None = None,
) -> AdaptReport:
    """Adapt ``base_model`` to ``passages`` with generated questions, and save it to ``output_dir``.

    Args:
        passages: the corpus: texts (ids ``p0``, ``p1``... are given) or id -> text. Empty texts are ignored;
            negatives are mined from all of it, questions written for a sample of ``settings.max_passages``.
        output_dir: the adapted model's folder; created. A model already there is replaced only once the new
            one is complete.
        base_model: the embedder to start from (a folder or hub id); None: the packaged MiniLM.
        settings: see :class:`AdaptSettings`.
        progress: called with an :class:`AdaptProgress` as the job advances; it may raise (any exception) to
            cancel: the job stops and ``output_dir`` keeps what it held (plus the questions generated so far,
            which a rerun resumes from).

    Returns:
        An :class:`AdaptReport`.

    Raises:
        ValueError: an empty corpus, fewer than :data:`MIN_PASSAGES` distinct passages, too few usable questions,
            a teacher folder that is not a reranker, an ``output_dir`` that is a file.
        GenerationError: the chat backend is down or answers garbage (it is named; a rerun resumes).
    """
    corpus = _corpus(passages)
    output = Path(output_dir)
    if output.exists() and not output.is_dir():
        raise ValueError(f"output_dir {output} is a file, not a folder")
    report = _Reporter(progress)
    timings: dict[str, float] = {}

    from retrievals_rag.data.generation import build_generator, generate_questions
    from retrievals_rag.data.question_filter import QuestionFilter

    generator = build_generator(
        settings.generator,
        questions_per_passage=settings.questions_per_passage,
        seed=settings.seed,
        span_removal=settings.span_removal,
        chat_model=settings.chat_model,
        max_new_tokens=settings.max_new_tokens,
        device=settings.device,
        openai_base_url=settings.openai_base_url,
        openai_model=settings.openai_model,
        openai_api_key=os.environ.get(settings.openai_api_key_env) or None,
        prompt=settings.question_prompt,
    )
    eligible = [passage_id for passage_id, text in corpus.items() if generator.accepts(text)]
    if len(eligible) < MIN_PASSAGES:  # e.g. the title generator on documents without headings
        raise ValueError(
            f"{len(eligible)} of the {len(corpus)} passages {generator.accepted}; the {generator.name} generator "
            f"needs at least {MIN_PASSAGES}: use another generator (cropping takes any passage)"
        )
    chosen = set(random.Random(settings.seed).sample(eligible, min(settings.max_passages, len(eligible))))
    sample = {passage_id: text for passage_id, text in corpus.items() if passage_id in chosen}  # corpus order
    output.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    generated = generate_questions(
        sample,
        generator,
        questions_file(output, generator.name),
        question_filter=QuestionFilter(reply_form=settings.reply_form),
        batch_size=settings.generation_batch_size,
        progress=lambda done, total: report(
            "generate", done, total, f"questions for {done}/{total} passages"
        ),
    )
    timings["generate"] = time.perf_counter() - started
    corpus = {passage_id: generator.training_text(text) for passage_id, text in corpus.items()}
    sample = {passage_id: corpus[passage_id] for passage_id in sample}
    train_questions, holdout_questions = _split(generated.questions, settings)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.adapt-", dir=output.parent))
    try:
        summary, loss, dropped, train_count = _train(
            corpus, sample, train_questions, holdout_questions, generator, staging, base_model, settings, report,
            timings,
        )  # fmt: skip
        _relocate(staging, output, summary, len(holdout_questions), len(sample))
        started = time.perf_counter()
        report("save", 0, 1, f"saving to {output}")
        result = AdaptReport(
            output_dir=output.resolve(),
            passages_used=len({question.passage_id for question in generated.questions}),
            questions=len(generated.questions),
            dropped={**generated.dropped, **dropped},
            verdict=summary.verdict,
            timings=timings,
            questions_per_second=generated.questions_per_second,
            generator=generator.name,
            loss=loss,
            base_model=str(base_model) if base_model is not None else "packaged MiniLM",
            train_questions=train_count,
            holdout_questions=len(holdout_questions),
            warnings=summary.warnings,
        )
        timings["save"] = time.perf_counter() - started
        (staging / ADAPT_REPORT_FILE).write_text(
            json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8"
        )
        _move_into(staging, output)
        report("save", 1, 1, f"saved to {output}")
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class _Reporter:
    def __init__(self, progress: Callable[[AdaptProgress], None] | None) -> None:
        self.progress = progress

    def __call__(self, stage: Stage, done: int, total: int, message: str) -> None:
        logger.info("%s: %s", stage, message)
        if self.progress is not None:
            self.progress(AdaptProgress(stage, done, total, message))


def _corpus(passages: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    """id -> stripped text, empty texts left out; at least :data:`MIN_PASSAGES` distinct texts."""
    if isinstance(passages, str):
        raise TypeError("passages must be a sequence of texts or a mapping of id -> text, not one string")
    items = (
        passages.items()
        if isinstance(passages, Mapping)
        else ((f"p{i}", text) for i, text in enumerate(passages))
    )
    corpus: dict[str, str] = {}
    for passage_id, text in items:
        if not isinstance(text, str):
            raise TypeError(f"passage {passage_id!r} is a {type(text).__name__}, not a str")
        if text.strip():
            corpus[str(passage_id)] = text.strip()
    if not corpus:
        raise ValueError("the corpus is empty: no passage with text to adapt to")
    distinct = len(set(corpus.values()))
    if distinct < MIN_PASSAGES:
        raise ValueError(
            f"the corpus has {distinct} distinct passage(s); adapting needs at least {MIN_PASSAGES}: questions of "
            "one held out for the before / after verdict, of at least two to train on, and other passages as "
            "negatives"
        )
    return corpus


def _split(
    questions: Sequence[GeneratedQuestion], settings: AdaptSettings
) -> tuple[list[GeneratedQuestion], list[GeneratedQuestion]]:
    """Hold out the questions of a seeded share of the passages (never a passage on both sides)."""
    passage_ids = list(dict.fromkeys(question.passage_id for question in questions))
    held_count = round(len(passage_ids) * settings.holdout_fraction) if settings.holdout_fraction else 0
    if settings.holdout_fraction:
        held_count = max(1, held_count)
    if len(passage_ids) - held_count < 2:
        raise ValueError(
            f"only {len(passage_ids)} passage(s) got a usable question ({held_count} held out): too few to train "
            "on; give more passages (or raise max_passages), or try another generator"
        )
    held = set(random.Random(settings.seed + 1).sample(passage_ids, held_count))
    return (
        [question for question in questions if question.passage_id not in held],
        [question for question in questions if question.passage_id in held],
    )


def _rank_range(settings: AdaptSettings, corpus_size: int) -> tuple[int, int]:
    """The settings' band, cut to the corpus: at least one rank left below the top."""
    start, end = settings.rank_range
    end = min(end, corpus_size)
    start = min(start, max(1, end - settings.num_negatives - 1))
    return start, max(end, start + 1)


def _train(
    corpus: dict[str, str],
    sample: dict[str, str],
    train_questions: list[GeneratedQuestion],
    holdout_questions: list[GeneratedQuestion],
    generator: QuestionGenerator,
    staging: Path,
    base_model: str | os.PathLike[str] | None,
    settings: AdaptSettings,
    report: _Reporter,
    timings: dict[str, float],
) -> tuple[Any, str, dict[str, int], int]:
    """Mine, label, write the data into ``staging/adapt_data``, and train into ``staging``."""
    from retrievals_rag.data.jsonl import write_jsonl
    from retrievals_rag.models.embedding import AutoModelForEmbedding
    from retrievals_rag.models.loading import default_embedding_model_path
    from retrievals_rag.retrieval.mining import mine_hard_negatives
    from retrievals_rag.training.arguments import (
        EmbeddingModelArguments,
        RetrievalDataArguments,
        RetrievalTrainingArguments,
    )
    from retrievals_rag.training.run import train_embedding
    from retrievals_rag.training.trainer import WeightAveraging

    model_path = str(base_model) if base_model is not None else str(default_embedding_model_path())
    started = time.perf_counter()
    report(
        "mine", 0, 1, f"mining hard negatives for {len(train_questions)} questions in {len(corpus)} passages"
    )
    encoder = AutoModelForEmbedding.from_pretrained(model_path, max_length=settings.max_length)
    corpus_ids = list(corpus)
    corpus_texts = [corpus[passage_id] for passage_id in corpus_ids]
    hybrid = settings.teacher == HYBRID_TEACHER
    # the hybrid teacher ranks with these same vectors: the corpus is encoded once
    corpus_vectors = encoder.encode_corpus(corpus_texts, show_progress_bar=False) if hybrid else None
    queries = {f"q{index}": question.question for index, question in enumerate(train_questions)}
    positives = {f"q{index}": [question.passage_id] for index, question in enumerate(train_questions)}
    records = mine_hard_negatives(
        encoder,
        corpus_ids,
        corpus_texts,
        queries,
        positives,
        rank_range=_rank_range(settings, len(corpus)),
        num_negatives=settings.num_negatives,
        seed=settings.seed,
        show_progress_bar=False,
        corpus_embeddings=corpus_vectors,
    )
    timings["mine"] = time.perf_counter() - started
    report("mine", 1, 1, f"{len(records)} questions with hard negatives")
    rng = random.Random(settings.seed)
    records = [
        {
            **record,
            "positive": [
                generator.training_positive(record["query"], record["positive"][0], rng),
                *record["positive"][1:],
            ],
        }
        for record in records
    ]
    dropped = {"false_negative": 0, "no_negative": len(train_questions) - len(records)}
    loss = "infonce"
    if settings.teacher is not None:
        started = time.perf_counter()
        from retrievals_rag.data.pseudo_labels import label_with_teacher

        pairs = sum(len(record["positive"]) + len(record["negative"]) for record in records)
        report("label", 0, pairs, f"scoring {pairs} pairs with the teacher {settings.teacher}")
        teacher: Any = settings.teacher
        cosines: Callable[[list[tuple[str, str]]], list[float]] | None = None
        if hybrid:
            teacher = _hybrid_teacher(records, encoder, dict(zip(corpus_texts, corpus_vectors, strict=True)))
            cosines = teacher.dense_scores
        else:
            likelihood_ranker = _likelihood_teacher(settings)
            if likelihood_ranker is not None:
                teacher, cosines = likelihood_ranker, _student_cosines(encoder)
        records, dropped["false_negative"] = label_with_teacher(
            records,
            teacher,
            false_negative_margin=settings.false_negative_margin,
            device=settings.device,
            progress=lambda done, total: report("label", done, total, f"scored {done}/{total} pairs"),
        )
        report("label", pairs, pairs, f"{dropped['false_negative']} likely false negatives dropped")
        dropped["no_negative"] = len(train_questions) - len(records)
        timings["label"] = time.perf_counter() - started
        loss = "margin_mse"
        if cosines is not None and records:  # scores that are no probabilities: put into the student's units
            records = _calibrate(records, cosines)
    del encoder
    if len(records) < 2:
        raise ValueError(
            f"only {len(records)} training question(s) kept a hard negative; give more passages or widen rank_range"
        )
    data = staging / DATA_FOLDER
    train_file = data / "train.jsonl"
    write_jsonl(records, train_file)
    eval_data = None
    if holdout_questions:  # each held-out question retrieves from all the sampled passages
        from retrievals_rag.evaluation.beir import write_beir

        held = {f"h{index}": question for index, question in enumerate(holdout_questions)}
        eval_data = write_beir(
            data / "holdout",
            sample,
            {query_id: question.question for query_id, question in held.items()},
            {query_id: {question.passage_id: 1} for query_id, question in held.items()},
        )
    started = time.perf_counter()
    report("evaluate", 0, 2, "judging the starting model on the held-out questions")
    summary = train_embedding(
        EmbeddingModelArguments(model_name_or_path=model_path),
        RetrievalDataArguments(
            train_data=str(train_file),
            train_group_size=settings.train_group_size,
            query_max_length=settings.question_tokens,
            document_max_length=settings.max_length,
            eval_data=None if eval_data is None else str(eval_data),
            holdout_fraction=0,
        ),
        RetrievalTrainingArguments(
            output_dir=str(staging),
            loss=loss,  # type: ignore[arg-type]
            temperature=settings.temperature,
            num_train_epochs=settings.epochs,
            learning_rate=settings.learning_rate,
            per_device_train_batch_size=settings.batch_size,
            warmup_steps=0.1,
            seed=settings.seed,
            save_strategy="no",
            eval_strategy="no",
            report_to=[],
            disable_tqdm=True,
        ),
        callbacks=[_progress_callback(report), WeightAveraging(settings.base_weight)],
    )
    timings["train"] = summary.seconds
    timings["evaluate"] = time.perf_counter() - started - summary.seconds
    return summary, loss, dropped, len(records)


def _likelihood_teacher(settings: AdaptSettings) -> Any:
    """The teacher as an LLM ranker scoring query likelihood (log-probabilities, calibrated to the student's
    margins), or None for a teacher folder whose scores are probabilities: ``"query-likelihood"`` (the chat model),
    or an LLM ranker folder saved with ``scoring="query_likelihood"``."""
    assert settings.teacher is not None
    if settings.teacher == QUERY_LIKELIHOOD_TEACHER:
        from retrievals_rag.llm.query_likelihood import query_likelihood_ranker

        # the passage as the student reads it, plus the prompt and the question
        length = settings.max_length + settings.question_tokens
        return query_likelihood_ranker(settings.chat_model, max_length=length, device=settings.device)
    from retrievals_rag.models.config import LLMRankerSettings, read_settings
    from retrievals_rag.models.registry import folder_kind

    if folder_kind(settings.teacher) != "llm_ranker":
        return None
    if (read_settings(settings.teacher, LLMRankerSettings) or {}).get("scoring") != "query_likelihood":
        return None
    from retrievals_rag.models.llm_ranking import LLMRanker

    return LLMRanker.from_pretrained(settings.teacher, device=settings.device)


def _hybrid_teacher(records: list[dict[str, Any]], encoder: Any, known: Mapping[str, Any]) -> Any:
    """The hybrid teacher over the records' passages (positives as trained on, and negatives), each passage's
    vector taken from the corpus encoding when it is a corpus text, else encoded."""
    import numpy as np

    from retrievals_rag.retrieval.hybrid_scorer import HybridPairScorer

    pool = list(
        dict.fromkeys(text for record in records for text in (*record["positive"], *record["negative"]))
    )
    unknown = [text for text in pool if text not in known]
    fresh = (
        dict(zip(unknown, encoder.encode_corpus(unknown, show_progress_bar=False), strict=True))
        if unknown
        else {}
    )
    vectors = np.stack([known[text] if text in known else fresh[text] for text in pool])
    return HybridPairScorer(encoder, pool, passage_embeddings=vectors)


def _student_cosines(encoder: Any) -> Callable[[list[tuple[str, str]]], list[float]]:
    """The starting model's cosine of (question, passage) pairs, for :func:`_calibrate`."""

    def cosines(pairs: list[tuple[str, str]]) -> list[float]:
        import numpy as np

        texts = list(dict.fromkeys(text for _, text in pairs))
        questions = list(dict.fromkeys(question for question, _ in pairs))
        passages = encoder.encode(texts, normalize_embeddings=True, show_progress_bar=False)
        asked = encoder.encode(questions, normalize_embeddings=True, show_progress_bar=False)
        row = {text: index for index, text in enumerate(texts)}
        question_row = {question: index for index, question in enumerate(questions)}
        return [float(np.dot(asked[question_row[question]], passages[row[text]])) for question, text in pairs]

    return cosines


def _calibrate(
    records: list[dict[str, Any]], cosines: Callable[[list[tuple[str, str]]], list[float]]
) -> list[dict[str, Any]]:
    """Teacher scores in the student's units: log-likelihood or RRF margins and cosine margins have no common
    scale, so the teacher's scores are multiplied by the starting model's mean absolute (positive - negative)
    margin over the teacher's, on these records (``cosines`` gives the starting model's score of each pair).
    margin_mse then keeps the student's typical margin and moves each pair's towards the teacher's judgement of
    it, instead of stretching or squeezing them all."""
    import numpy as np

    pairs = [
        (record["query"], text) for record in records for text in (*record["positive"], *record["negative"])
    ]
    scores = iter(cosines(pairs))
    student, teacher = [], []
    for record in records:
        positive = [next(scores) for _ in record["positive"]]
        negative = [next(scores) for _ in record["negative"]]
        student.append(float(np.mean(positive) - np.mean(negative)))
        teacher.append(float(np.mean(record["positive_scores"]) - np.mean(record["negative_scores"])))
    typical_teacher = float(np.mean(np.abs(teacher)))
    scale = float(np.mean(np.abs(student))) / typical_teacher if typical_teacher > 0 else 1.0
    logger.info(
        "teacher scores scaled by %.4f (mean margins: student %.4f, teacher %.4f)",
        scale, np.mean(student), np.mean(teacher),
    )  # fmt: skip
    return [
        {
            **record,
            "positive_scores": [score * scale for score in record["positive_scores"]],
            "negative_scores": [score * scale for score in record["negative_scores"]],
        }
        for record in records
    ]


def _progress_callback(report: _Reporter) -> Any:
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        """Reports training steps; whatever ``progress`` raises stops training (cancel)."""

        def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            report("train", 0, state.max_steps, "training")

        def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            report("train", state.global_step, state.max_steps, f"step {state.global_step}/{state.max_steps}")

        def on_train_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            report("evaluate", 1, 2, "judging the trained model on the held-out questions")

    return _Progress()


def _relocate(staging: Path, output: Path, summary: Any, held_out: int, sampled: int) -> None:
    """Name ``output``, not the temporary folder, in the summary and the files ``train_embedding`` wrote."""
    old, new = str(staging.resolve()), str(output.resolve())
    summary.warnings = [warning.replace(old, new) for warning in summary.warnings]
    if summary.verdict is not None:
        summary.verdict["data"] = (
            f"{held_out} held-out generated questions, each retrieving from {sampled} passages"
        )
    for name in ("verdict.json", "training_summary.json"):
        path = staging / name
        if path.is_file():
            payload = json.loads(path.read_text(encoding="utf-8").replace(old, new))
            if summary.verdict is not None:
                payload = (
                    summary.verdict if name == "verdict.json" else {**payload, "verdict": summary.verdict}
                )
            path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def _move_into(staging: Path, output: Path) -> None:
    """Make ``output`` hold ``staging``'s files, keeping its questions files; the old content goes last."""
    for kept in output.glob("generated_questions-*.jsonl"):
        shutil.copy2(kept, staging / kept.name)
    retired = output.with_name(f".{output.name}.previous-{os.getpid()}")
    output.rename(retired)
    try:
        staging.rename(output)
    except OSError:
        retired.rename(output)
        raise
    shutil.rmtree(retired, ignore_errors=True)
