"""Adapt an embedder to a corpus without labels: generated questions, mined negatives, a before / after verdict.

The recipe (GPL, Wang et al. 2022, "GPL: Generative Pseudo Labeling for Unsupervised Domain Adaptation of Dense
Retrieval", with the generator and the teacher made optional):

1. **generate**: a seeded sample of ``max_passages`` passages gets questions (:mod:`retrievals_rag.data.generation`:
   spans of the passage, SmolLM2, or an OpenAI-compatible endpoint), filtered and appended to
   ``output_dir/generated_questions-<generator>.jsonl`` as they come, so a rerun resumes;
2. the questions of a ``holdout_fraction`` of those passages are held out for the verdict;
3. **mine**: hard negatives for each training question from the current embedder's ranking of the whole corpus
   (:func:`~retrievals_rag.retrieval.mining.mine_hard_negatives`; the passage a question was written for is its
   positive, and a passage with the same text is never a negative);
4. **label**: with a ``teacher`` (a cross-encoder, LLM ranker or ColBERT folder of ours), every (question,
   passage) pair is scored, negatives that the teacher scores within ``false_negative_margin`` of the positive
   (or above it) are dropped as likely false negatives, and training uses ``margin_mse`` on the teacher's
   scores; without one, InfoNCE;
5. **train** with :func:`~retrievals_rag.training.run.train_embedding`, which judges the starting and the trained
   model on the held-out questions, each retrieving from all the sampled passages;
6. **save**: the model folder (what ``AutoModelForEmbedding.from_pretrained`` loads) with ``adapt_report.json``,
   ``verdict.json`` and the generated data (``adapt_data/``) beside the weights.

Everything but the questions file is written into a temporary folder beside ``output_dir`` and moved in when
complete; on an error, or when ``progress`` raises to cancel, that folder is removed and whatever ``output_dir``
held before (a previous model included) is left as it was. Example::

    from retrievals_rag.training.adapt import AdaptSettings, adapt_embedder

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
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from retrievals_rag.data.generation import GeneratorName

if TYPE_CHECKING:
    from retrievals_rag.data.generation import GeneratedQuestion

__all__ = [
    "ADAPT_REPORT_FILE",
    "MIN_PASSAGES",
    "AdaptProgress",
    "AdaptReport",
    "AdaptSettings",
    "adapt_embedder",
    "questions_file",
]

logger = logging.getLogger(__name__)

Stage = Literal["generate", "mine", "label", "train", "evaluate", "save"]
ADAPT_REPORT_FILE = "adapt_report.json"
DATA_FOLDER = "adapt_data"
_POSITIVE_INTEGERS = (
    "max_passages questions_per_passage num_negatives train_group_size batch_size query_max_length max_length "
    "generation_batch_size max_new_tokens"
).split()
MIN_PASSAGES = 5
"""Fewest distinct passages: questions of at least one held out, of at least two trained on, and negatives."""


def questions_file(output_dir: str | os.PathLike[str], generator: str) -> Path:
    """Where the generated questions of ``generator`` are kept (and resumed from) in ``output_dir``."""
    return Path(output_dir) / f"generated_questions-{generator}.jsonl"


@dataclass(frozen=True)
class AdaptSettings:
    """How :func:`adapt_embedder` adapts: the generator, the sample, the negatives, the teacher and training.

    Each field's ``help`` (also what ``retrievals-rag adapt --help`` shows) says what it does. Checked when made;
    importing this class loads no torch.
    """

    generator: GeneratorName = field(
        default="cropping",
        metadata={
            "help": "what writes the questions: cropping (a span of the passage: fast, no model), smollm2 (the "
            "packaged SmolLM2-135M-Instruct, or --chat-model) or openai (an OpenAI-compatible endpoint)"
        },
    )
    max_passages: int = field(
        default=2000, metadata={"help": "passages sampled (seeded) to write questions for"}
    )
    questions_per_passage: int = field(default=1, metadata={"help": "questions asked for per passage"})
    holdout_fraction: float = field(
        default=0.1,
        metadata={"help": "share of the sampled passages whose questions are held out for the before / after "
                  "verdict (0: none, no verdict)"},
    )  # fmt: skip
    span_removal: float = field(
        default=0.9,
        metadata={"help": "cropping: share of the training questions whose span is cut out of their positive "
                  "passage (the inverse cloze task: the span must be matched to the rest of its passage, not "
                  "found in it word for word); 0 keeps every positive whole"},
    )  # fmt: skip
    num_negatives: int = field(default=3, metadata={"help": "hard negatives mined per question"})
    rank_range: tuple[int, int] = field(
        default=(5, 50),
        metadata={"help": "the 0-based ranks [start, end) of the current embedder's ranking that negatives are "
                  "drawn from (cut to the corpus size)"},
    )  # fmt: skip
    train_group_size: int = field(
        default=2,
        metadata={"help": "passages per question in a training example: the positive + hard negatives"},
    )
    teacher: str | None = field(
        default=None,
        metadata={"help": "a reranker folder of ours (cross-encoder, LLM ranker or ColBERT) whose scores are the "
                  "pseudo-labels, trained with margin_mse (default: none, InfoNCE)"},
    )  # fmt: skip
    false_negative_margin: float = field(
        default=0.0,
        metadata={"help": "with a teacher: a negative scored above the positive's score minus this (sigmoid "
                  "scale, 0 to 1) is dropped as a likely false negative"},
    )  # fmt: skip
    base_weight: float = field(
        default=0.0,
        metadata={"help": "share of the starting model's weights averaged back into the trained ones before the "
                  "verdict and the save (WiSE-FT, Wortsman et al. 2022; 0: the trained weights alone)"},
    )  # fmt: skip
    epochs: float = field(default=1.0, metadata={"help": "training epochs"})
    learning_rate: float = field(
        default=2e-5,
        metadata={"help": "peak learning rate (warm-up over 10% of the steps, then linear decay)"},
    )
    batch_size: int = field(
        default=32, metadata={"help": "questions per training batch (in-batch negatives)"}
    )
    temperature: float = field(default=0.05, metadata={"help": "InfoNCE temperature"})
    query_max_length: int = field(default=64, metadata={"help": "tokens per question"})
    max_length: int = field(
        default=256, metadata={"help": "tokens per passage, in training and in the saved model"}
    )
    seed: int = field(
        default=42, metadata={"help": "seed of the sample, the split, the crops, the negatives and training"}
    )
    generation_batch_size: int = field(
        default=16, metadata={"help": "passages per generator call (and per append to the questions file)"}
    )
    max_new_tokens: int = field(default=40, metadata={"help": "most tokens a chat model writes per passage"})
    chat_model: str | None = field(
        default=None,
        metadata={
            "help": "smollm2: a transformers chat folder or .gguf file (default: the packaged SmolLM2)"
        },
    )
    openai_base_url: str | None = field(
        default=None,
        metadata={"help": "openai: the API root, e.g. http://127.0.0.1:11434/v1 (default: none)"},
    )
    openai_model: str | None = field(
        default=None, metadata={"help": "openai: the model name the server knows (default: none)"}
    )
    openai_api_key_env: str = field(
        default="OPENAI_API_KEY",
        metadata={"help": "openai: the environment variable that holds the API key (unset: no key is sent)"},
    )
    device: str | None = field(
        default=None,
        metadata={"help": "where the chat model and the teacher run (default: cuda if available); training "
                  "places itself"},
    )  # fmt: skip

    def __post_init__(self) -> None:
        if self.generator not in ("cropping", "smollm2", "openai"):
            raise ValueError(f"generator must be 'cropping', 'smollm2' or 'openai', got {self.generator!r}")
        for name in _POSITIVE_INTEGERS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"AdaptSettings.{name} must be an integer >= 1, got {value!r}")
        if not 0 <= self.span_removal <= 1:
            raise ValueError(f"AdaptSettings.span_removal must be in [0, 1], got {self.span_removal!r}")
        if isinstance(self.base_weight, bool) or not 0 <= self.base_weight < 1:
            raise ValueError(f"AdaptSettings.base_weight must be in [0, 1), got {self.base_weight!r}")
        if not 0 <= self.holdout_fraction < 1:
            raise ValueError(
                f"AdaptSettings.holdout_fraction must be in [0, 1), got {self.holdout_fraction!r}"
            )
        start, end = self.rank_range
        if not 0 <= start < end:
            raise ValueError(
                f"AdaptSettings.rank_range must satisfy 0 <= start < end, got {self.rank_range!r}"
            )
        if not self.epochs > 0 or not self.learning_rate > 0 or not self.temperature > 0:
            raise ValueError("AdaptSettings.epochs, learning_rate and temperature must be > 0")
        if self.generator == "openai" and not (self.openai_base_url and self.openai_model):
            raise ValueError(
                "generator='openai' needs openai_base_url (e.g. http://127.0.0.1:11434/v1) and openai_model"
            )
        if self.openai_base_url and not self.openai_base_url.startswith(("http://", "https://")):
            raise ValueError(
                f"openai_base_url must start with http:// or https://, got {self.openai_base_url!r}"
            )


@dataclass
class AdaptProgress:
    """One progress report: ``stage`` is ``generate``, ``mine``, ``label``, ``train``, ``evaluate`` or ``save``;
    ``done`` of ``total`` units (passages, steps...); ``message`` says it in words."""

    stage: Stage
    done: int
    total: int
    message: str


@dataclass
class AdaptReport:
    """What :func:`adapt_embedder` did, also written to ``output_dir/adapt_report.json``.

    Attributes:
        output_dir: the adapted model's folder.
        passages_used: sampled passages that got at least one question.
        questions: questions kept (training and held out).
        dropped: reason -> count: generated questions filtered out (``empty``, ``duplicate``, ``copied``,
            ``too_long``, ``garbage``), negatives dropped by the teacher (``false_negative``) and training
            questions left without a negative (``no_negative``).
        verdict: the start and the trained model on the held-out questions
            (:meth:`~retrievals_rag.training.verdict.Verdict.to_dict`: ``before`` / ``after`` nDCG@10, MRR@10,
            Recall@100...), None without a holdout.
        timings: stage -> seconds.
        questions_per_second: generation throughput of this run (0 when every passage was resumed).
        generator: the generator's name; loss: ``infonce`` or ``margin_mse``; base_model: the starting model.
        train_questions / holdout_questions: how the questions were split.
    """

    output_dir: Path
    passages_used: int
    questions: int
    dropped: dict[str, int]
    verdict: dict[str, Any] | None
    timings: dict[str, float]
    questions_per_second: float
    generator: str = ""
    loss: str = "infonce"
    base_model: str = ""
    train_questions: int = 0
    holdout_questions: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["output_dir"] = str(self.output_dir)
        return payload

    def describe(self) -> str:
        """A few lines for a terminal: what was used, the verdict table, the timings."""
        from retrievals_rag.training.run import _verdict_of

        lines = [
            f"adapted model: {self.output_dir}",
            f"generator {self.generator}: {self.questions} questions for {self.passages_used} passages "
            f"({self.train_questions} trained on, {self.holdout_questions} held out), "
            f"{self.questions_per_second:.1f} questions/s; loss {self.loss}",
        ]
        dropped = {reason: count for reason, count in self.dropped.items() if count}
        if dropped:
            lines.append("dropped: " + ", ".join(f"{reason} {count}" for reason, count in dropped.items()))
        if self.verdict is not None:
            lines.append(_verdict_of(self.verdict).table())
        lines += self.warnings
        lines.append(
            "time: " + ", ".join(f"{stage} {seconds:.1f}s" for stage, seconds in self.timings.items())
        )
        return "\n".join(lines)


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
    chosen = set(random.Random(settings.seed).sample(list(corpus), min(settings.max_passages, len(corpus))))
    sample = {passage_id: text for passage_id, text in corpus.items() if passage_id in chosen}  # corpus order

    from retrievals_rag.data.generation import build_generator, generate_questions

    generator = build_generator(
        settings.generator,
        questions_per_passage=settings.questions_per_passage,
        seed=settings.seed,
        chat_model=settings.chat_model,
        max_new_tokens=settings.max_new_tokens,
        device=settings.device,
        openai_base_url=settings.openai_base_url,
        openai_model=settings.openai_model,
        openai_api_key=os.environ.get(settings.openai_api_key_env) or None,
    )
    output.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    generated = generate_questions(
        sample,
        generator,
        questions_file(output, generator.name),
        batch_size=settings.generation_batch_size,
        progress=lambda done, total: report(
            "generate", done, total, f"questions for {done}/{total} passages"
        ),
    )
    timings["generate"] = time.perf_counter() - started
    train_questions, holdout_questions = _split(generated.questions, settings)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.adapt-", dir=output.parent))
    try:
        summary, loss, dropped, train_count = _train(
            corpus, sample, train_questions, holdout_questions, staging, base_model, settings, report, timings
        )
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
    queries = {f"q{index}": question.question for index, question in enumerate(train_questions)}
    positives = {f"q{index}": [question.passage_id] for index, question in enumerate(train_questions)}
    records = mine_hard_negatives(
        encoder,
        corpus_ids,
        [corpus[passage_id] for passage_id in corpus_ids],
        queries,
        positives,
        rank_range=_rank_range(settings, len(corpus)),
        num_negatives=settings.num_negatives,
        seed=settings.seed,
        show_progress_bar=False,
    )
    del encoder
    timings["mine"] = time.perf_counter() - started
    report("mine", 1, 1, f"{len(records)} questions with hard negatives")
    if settings.generator == "cropping" and settings.span_removal > 0:
        records = _cut_spans(records, settings.span_removal, settings.seed)
    dropped = {"false_negative": 0, "no_negative": len(train_questions) - len(records)}
    loss = "infonce"
    if settings.teacher is not None:
        started = time.perf_counter()
        from retrievals_rag.data.pseudo_labels import label_with_teacher

        pairs = sum(len(record["positive"]) + len(record["negative"]) for record in records)
        report("label", 0, pairs, f"scoring {pairs} pairs with the teacher {settings.teacher}")
        records, dropped["false_negative"] = label_with_teacher(
            records,
            settings.teacher,
            false_negative_margin=settings.false_negative_margin,
            device=settings.device,
        )
        report("label", pairs, pairs, f"{dropped['false_negative']} likely false negatives dropped")
        dropped["no_negative"] = len(train_questions) - len(records)
        timings["label"] = time.perf_counter() - started
        loss = "margin_mse"
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
            query_max_length=settings.query_max_length,
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


def _cut_spans(records: list[dict[str, Any]], share: float, seed: int) -> list[dict[str, Any]]:
    """The inverse cloze task (Lee et al. 2019): in a seeded ``share`` of the records, the query (a span of its
    positive passage) is cut out of the positive, whitespace as the passage has it; a positive that would be
    left empty, or that does not hold the span, stays whole."""
    rng = random.Random(seed)
    cut = []
    for record in records:
        if rng.random() < share:
            words = record["query"].split()
            pattern = re.compile(r"\s+".join(re.escape(word) for word in words)) if words else None
            positive = record["positive"][0]
            rest = pattern.sub(" ", positive, count=1).strip() if pattern else positive
            if rest and rest != positive:
                record = {**record, "positive": [re.sub(r" {2,}", " ", rest), *record["positive"][1:]]}
        cut.append(record)
    return cut


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
