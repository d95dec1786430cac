"""``retrievals-rag adapt``: adapt an embedder to a corpus without labels (generated questions, mined negatives)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from retrievals_rag.cli.common import report_time

DESCRIPTION = """\
Adapt an embedder to your documents without labels: questions are written for a sample of the passages (spans of
the passage, its title or heading, the packaged SmolLM2, or an OpenAI-compatible endpoint), hard negatives are
mined with the current embedder, a teacher labels them when given (a reranker folder, query-likelihood, or hybrid:
BM25 fused with the embedder; margin_mse; else InfoNCE), and the
embedder is fine-tuned and judged before / after on held-out questions. The corpus is a BEIR corpus.jsonl (or a BEIR folder), or files
and folders of documents (PDF, text, Markdown, HTML, DOCX, CSV, JSON lines), split into chunks: the passages.

The output folder holds the adapted model (it loads with AutoModelForEmbedding.from_pretrained), adapt_report.json
(the verdict, the questions' counts, the timings), and the generated questions: an interrupted run resumes from
them when run again with the same --output-dir.

example:
  retrievals-rag adapt --corpus scifact/corpus.jsonl --output-dir runs/adapted --generator smollm2
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "adapt",
        help="adapt an embedder to a corpus without labels",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--corpus",
        nargs="+",
        required=True,
        metavar="PATH",
        help="a BEIR corpus.jsonl or BEIR folder, or document files and folders (folders: recursively)",
    )
    parser.add_argument(
        "--output-dir", "--output_dir", required=True, type=Path, help="the adapted model's folder"
    )
    parser.add_argument(
        "--base-model",
        "--base_model",
        default=None,
        help="the embedder to adapt (default: the packaged all-MiniLM-L6-v2)",
    )
    chunks = parser.add_argument_group("documents (not BEIR)")
    chunks.add_argument(
        "--chunk-size", type=int, default=None, help="tokens per chunk (default: 25/32 of --max-length)"
    )
    chunks.add_argument(
        "--chunk-overlap", type=int, default=None, help="tokens shared by neighbour chunks (default: a fifth)"
    )
    add_settings_arguments(parser.add_argument_group("adaptation"))
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bars (default: on a terminal)"
    )
    parser.set_defaults(handler=run)


def add_settings_arguments(parser: Any, skip: Sequence[str] = ()) -> None:
    """One option per :class:`~retrievals_rag.training.adapt_settings.AdaptSettings` field but those in ``skip``
    (``--max-passages`` for ``max_passages``...), with the field's type, default and help."""
    from retrievals_rag.training.adapt_settings import AdaptSettings

    hints = typing.get_type_hints(AdaptSettings)
    for setting in dataclasses.fields(AdaptSettings):
        if setting.name not in skip:
            _add_setting(parser, setting, hints[setting.name])


def settings_from_arguments(args: argparse.Namespace, skip: Sequence[str] = ()) -> Any:
    """The :class:`~retrievals_rag.training.adapt_settings.AdaptSettings` that :func:`add_settings_arguments`' options
    give (fields in ``skip`` keep their defaults)."""
    from retrievals_rag.training.adapt_settings import AdaptSettings

    values = {
        setting.name: getattr(args, setting.name)
        for setting in dataclasses.fields(AdaptSettings)
        if setting.name not in skip
    }
    return AdaptSettings(
        **{name: tuple(value) if isinstance(value, list) else value for name, value in values.items()}
    )


def _add_setting(group: Any, setting: dataclasses.Field[Any], kind: Any) -> None:
    """The option of one :class:`AdaptSettings` field, typed (``kind``) and defaulted from the field itself."""
    names = [f"--{setting.name.replace('_', '-')}"]
    options: dict[str, Any] = {
        "default": setting.default,
        "help": setting.metadata["help"].replace("%", "%%"),
    }
    if typing.get_origin(kind) is typing.Literal:
        options["choices"] = list(typing.get_args(kind))
    elif typing.get_origin(kind) is tuple:
        options.update(type=int, nargs=2, metavar=("START", "END"))
    else:
        arguments = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        if typing.get_origin(kind) in (typing.Union, types.UnionType) and arguments:
            kind = arguments[0]
        options["type"] = kind
    group.add_argument(*names, dest=setting.name, **options)


def read_passages(
    paths: Sequence[str | Path],
    *,
    base_model: str | None,
    max_length: int,
    chunk_size: int | None = None,
    chunk_overlap: int | None = None,
) -> dict[str, str]:
    """The passages of ``paths``: id -> text.

    A BEIR ``corpus.jsonl`` (or a folder holding one) gives its documents (title, a line break, and text);
    other files and folders are loaded (:mod:`retrievals_rag.rag.loaders`) and split into chunks of the base
    model's tokens (:class:`~retrievals_rag.rag.chunking.Chunker`), each chunk a passage.

    Raises:
        ValueError: a path that does not exist, or a file that cannot be loaded (named, with the reason).
    """
    from retrievals_rag.evaluation.beir import document_text, load_corpus

    passages: dict[str, str] = {}
    documents: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise ValueError(f"--corpus: {path} does not exist")
        beir = path / "corpus.jsonl" if path.is_dir() else path
        if beir.name == "corpus.jsonl" and beir.is_file():
            corpus = load_corpus(beir)  # the title on a line of its own: the title generator's question
            passages.update({doc_id: document_text(doc, "\n") for doc_id, doc in corpus.items()})
        else:
            documents.append(path)
    if documents:
        passages.update(_chunk_documents(documents, base_model, max_length, chunk_size, chunk_overlap))
    return passages


def _chunk_documents(
    paths: list[Path],
    base_model: str | None,
    max_length: int,
    chunk_size: int | None,
    chunk_overlap: int | None,
) -> dict[str, str]:
    from transformers import AutoTokenizer

    from retrievals_rag.models.loading import default_embedding_model_path
    from retrievals_rag.rag.chunking import Chunker
    from retrievals_rag.rag.indexing import expand_paths, left_out_message
    from retrievals_rag.rag.loaders import DocumentLoadError, load_document

    tokenizer = AutoTokenizer.from_pretrained(base_model or default_embedding_model_path())
    chunker = Chunker(tokenizer, max_length=max_length, chunk_size=chunk_size, chunk_overlap=chunk_overlap)
    passages: dict[str, str] = {}
    for file in expand_paths(paths):
        try:
            document = load_document(file)
        except DocumentLoadError as error:
            raise ValueError(f"--corpus: {error}") from error
        passages.update({chunk.id: chunk.text for chunk in chunker.split(document)})
    left_out = left_out_message(paths)
    if left_out:
        print(left_out)
    return passages


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from retrievals_rag.llm.base import GenerationError
    from retrievals_rag.training.adapt import adapt_embedder
    from retrievals_rag.training.adapt_settings import AdaptProgress

    start = time.perf_counter()
    settings = settings_from_arguments(args)
    passages = read_passages(
        args.corpus,
        base_model=args.base_model,
        max_length=settings.max_length,
        chunk_size=args.chunk_size,
        chunk_overlap=args.chunk_overlap,
    )
    print(f"{len(passages)} passages read from {', '.join(map(str, args.corpus))}", file=sys.stderr)
    bars: dict[str, Any] = {}

    def show(step: AdaptProgress) -> None:
        bar = bars.get(step.stage)
        if bar is None:
            for other in bars.values():
                other.close()
            bar = bars[step.stage] = tqdm(total=step.total, desc=step.stage, disable=args.no_progress or None)
        bar.total = step.total
        bar.update(step.done - bar.n)
        bar.set_postfix_str(step.message, refresh=True)

    try:
        report = adapt_embedder(
            passages, args.output_dir, base_model=args.base_model, settings=settings, progress=show
        )
    except GenerationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        for bar in bars.values():
            bar.close()
    print(report.describe())
    report_time(f"adapted on {report.passages_used} passages ({report.questions} questions)", start)
    return 0
