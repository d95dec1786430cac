"""What :func:`~retrievals_rag.training.adapt.adapt_embedder` is told and what it reports: its settings, progress
reports and final report, and where it keeps the generated questions.

The command line, the RAG engine and the app read these to build options, check a request and show results before
any model is loaded: importing this module loads no torch (nor the adaptation's own imports).
"""

from __future__ import annotations

import os
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from retrievals_rag.data.generation import GeneratorName, check_question_prompt
from retrievals_rag.data.question_filter import QuestionFilter, ReplyForm
from retrievals_rag.llm.query_likelihood import QUERY_LIKELIHOOD

__all__ = [
    "ADAPT_REPORT_FILE",
    "HYBRID_TEACHER",
    "MIN_PASSAGES",
    "QUERY_LIKELIHOOD_TEACHER",
    "AdaptProgress",
    "AdaptReport",
    "AdaptSettings",
    "questions_file",
]

Stage = Literal["generate", "mine", "label", "train", "evaluate", "save"]
QUERY_LIKELIHOOD_TEACHER = QUERY_LIKELIHOOD
"""The ``teacher`` that is no folder: the chat model's likelihood of the question given the passage."""
HYBRID_TEACHER = "hybrid"
"""The ``teacher`` that is no model beyond the embedder: BM25 fused with the starting embedder by RRF, over the
training passages (:class:`~retrievals_rag.retrieval.hybrid_scorer.HybridPairScorer`)."""
ADAPT_REPORT_FILE = "adapt_report.json"
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
            "help": "what writes the questions: cropping (a span of the passage: fast, no model), title (the "
            "passage's first line when it is a heading or title, cut from the passage in training: fast, no model; "
            "only passages that open with one), smollm2 (the packaged SmolLM2-135M-Instruct, or --chat-model) or "
            "openai (an OpenAI-compatible endpoint)"
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
                  "pseudo-labels, trained with margin_mse; or query-likelihood: the chat model (the packaged "
                  "SmolLM2, or --chat-model) scores how likely each passage makes the question (UPR, no training "
                  "needed; slow on a CPU: about 1 pair/s per core), its margins rescaled to the starting model's; or hybrid: "
                  "BM25 fused with the starting embedder (RRF, as the engine's use_bm25) over the training passages, "
                  "no model beyond the embedder, thousands of pairs/s, its margins rescaled likewise (default: none, "
                  "InfoNCE)"},
    )  # fmt: skip
    false_negative_margin: float = field(
        default=0.0,
        metadata={"help": "with a teacher: a negative scored above the positive's score minus this (a folder's "
                  "sigmoid scale, 0 to 1; query-likelihood: log-probability per token; hybrid: RRF score, 2/61 for the "
                  "first rank of both rankings) is dropped as a likely false negative"},
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
    query_max_length: int = field(default=64, metadata={"help": "tokens per question (at most max_length)"})
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
            "help": "smollm2 generator and query-likelihood teacher: a transformers chat folder or .gguf file "
            "(default: the packaged SmolLM2)"
        },
    )
    openai_base_url: str | None = field(
        default=None,
        metadata={"help": "openai: the API root, e.g. http://127.0.0.1:11434/v1 (default: none)"},
    )
    openai_model: str | None = field(
        default=None, metadata={"help": "openai: the model name the server knows (default: none)"}
    )
    question_prompt: str | None = field(
        default=None,
        metadata={
            "help": 'smollm2 / openai: the message that asks for questions, with {passage} and {questions} ("one '
            'question" or "3 questions (one per line)") or {count}; e.g. to ask for claims, keywords or '
            "another language, the way your users will search (default: the library's question prompt)"
        },
    )
    reply_form: ReplyForm = field(
        default="question",
        metadata={
            "help": "smollm2 / openai: question (a reply must read as a question, else it is dropped as garbage) or "
            "any (for a --question-prompt that asks for claims, statements or keywords)"
        },
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

    @property
    def question_tokens(self) -> int:
        """Tokens per question in training and labelling: ``query_max_length``, at most ``max_length`` (the
        model is loaded with ``max_length``, and the trainer refuses questions longer than the model reads)."""
        return min(self.query_max_length, self.max_length)

    def __post_init__(self) -> None:
        if self.generator not in typing.get_args(GeneratorName):
            raise ValueError(
                f"generator must be one of {', '.join(typing.get_args(GeneratorName))}, got {self.generator!r}"
            )
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
        QuestionFilter(reply_form=self.reply_form)  # checks it: one rule for both
        if self.generator == "title" and self.questions_per_passage != 1:
            raise ValueError(
                f"the title generator gives one question per passage (its heading), got questions_per_passage="
                f"{self.questions_per_passage}"
            )
        if self.question_prompt is not None:
            if self.generator in ("cropping", "title"):
                raise ValueError(
                    f"question_prompt is for the smollm2 and openai generators: {self.generator} asks no model"
                )
            check_question_prompt(self.question_prompt, "question_prompt")
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
