"""What the subcommands share: the embedder options, help that shows real defaults, progress on a terminal."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

_TICK_SECONDS = 1.0
# The encoder's defaults (retrievals_rag.models.base, not imported here: it loads torch); a test keeps them equal.
BATCH_SIZE_HELP = "256 on the CPU, 1,024 on a GPU"
TOKEN_BUDGET_HELP = "4,096 on the CPU, 131,072 on a GPU"


class HelpFormatter(argparse.HelpFormatter):
    """Adds ``(default: X)`` to every option whose help does not already say its default.

    An option whose default is None or False says in its help what that means (the model's own value, off...),
    so nothing is added to it.
    """

    show_unset_defaults = False  # True: None and False are shown too (for help written by another library)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "default" in text.lower()
            or (not self.show_unset_defaults and (action.default is None or action.default is False))
            or action.default == argparse.SUPPRESS
            or (not action.option_strings and action.nargs not in ("?", "*"))
        ):
            return text
        return f"{text} (default: %(default)s)".strip()


class RawDescriptionHelpFormatter(argparse.RawDescriptionHelpFormatter, HelpFormatter):
    """:class:`HelpFormatter` that keeps the description's line breaks (for descriptions with examples)."""


class TrainingHelpFormatter(HelpFormatter):
    """:class:`HelpFormatter` for ``train``'s options, most of them transformers' ``TrainingArguments``: their
    help does not say what None or False means, so every default is shown, once (transformers' own formatter
    added a second, contradicting ``(default: None)`` to ours)."""

    show_unset_defaults = True


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default=None,
        help="model folder (default: the packaged all-MiniLM-L6-v2)",
    )
    group.add_argument(
        "--pooling",
        choices=["cls", "mean", "last", "weighted_mean"],
        default=None,
        help="pooling of token vectors (default: the one saved with the model, else mean; last for a decoder LLM)",
    )
    group.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="tokens per text, special tokens included (default: the one saved with the model)",
    )
    group.add_argument(
        "--query-instruction",
        default=None,
        help="prefix for queries; {} is the text (default: the one saved with the model, else none)",
    )
    group.add_argument(
        "--document-instruction",
        default=None,
        help="prefix for documents; {} is the text (default: the one saved with the model, else none)",
    )
    group.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    group.add_argument(
        "--dtype",
        choices=["float32", "float16", "bfloat16"],
        default=None,
        help="compute dtype (default: float32; half precision is only used on a GPU)",
    )
    group.add_argument(
        "--trust-remote-code", action="store_true", help="run the model folder's own code (default: off)"
    )
    group.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help=f"most texts per batch (default: {BATCH_SIZE_HELP})",
    )
    group.add_argument(
        "--token-budget",
        type=positive_int,
        default=None,
        help=f"most padded tokens per batch (default: {TOKEN_BUDGET_HELP})",
    )
    add_backend_argument(group)


def add_backend_argument(parser: Any, default: str = "torch") -> None:
    from retrievals_rag.models.backends.record import BACKEND_NAMES

    parser.add_argument(
        "--backend",
        choices=[*BACKEND_NAMES, "auto"],
        default=default,
        help="what runs the transformer: torch, a graph exported into the model folder by `retrievals-rag "
        f"export`, or auto (the fastest the folder holds on this device; default: {default})",
    )


def load_embedder(args: argparse.Namespace) -> Any:
    from retrievals_rag.models.embedding import AutoModelForEmbedding
    from retrievals_rag.models.loading import default_embedding_model_path

    with activity(f"loading {args.model or 'the packaged all-MiniLM-L6-v2'}"):
        return AutoModelForEmbedding.from_pretrained(
            args.model or default_embedding_model_path(),
            pooling_method=args.pooling,
            max_length=args.max_length,
            query_instruction=args.query_instruction,
            document_instruction=args.document_instruction,
            device=args.device,
            dtype=args.dtype,
            trust_remote_code=args.trust_remote_code,
            backend=args.backend,
        )


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def on_terminal(stream: TextIO | None = None) -> bool:
    """Whether progress should be drawn: standard error (or ``stream``) is a terminal."""
    stream = sys.stderr if stream is None else stream
    return bool(getattr(stream, "isatty", lambda: False)())


@contextmanager
def activity(label: str, stream: TextIO | None = None) -> Iterator[None]:
    """Show ``label… 12 s`` on a terminal, updated every second, while the block runs (a job without a count).

    Nothing is drawn when standard error is not a terminal; the line is cleared at the end.
    """
    stream = sys.stderr if stream is None else stream
    if not on_terminal(stream):
        yield
        return
    start = time.monotonic()
    done = threading.Event()

    def tick() -> None:
        while not done.wait(_TICK_SECONDS):
            stream.write(f"\r{label}… {time.monotonic() - start:.0f} s")
            stream.flush()

    ticker = threading.Thread(target=tick, name="retrievals-rag-activity", daemon=True)
    ticker.start()
    try:
        yield
    finally:
        done.set()
        ticker.join()
        stream.write("\r\033[K")
        stream.flush()


def report_time(what: str, start: float, stream: TextIO | None = None) -> None:
    """The final timing line: ``WHAT in 12.3 s``, on standard error."""
    print(f"{what} in {time.perf_counter() - start:.1f} s", file=sys.stderr if stream is None else stream)


def add_encoded_corpus_argument(parser: argparse.ArgumentParser) -> None:
    """``--encoded-corpus``: read the corpus vectors that ``encode --output-dir`` wrote instead of encoding again."""
    parser.add_argument(
        "--encoded-corpus",
        type=Path,
        default=None,
        help="the corpus already encoded by this model (`encode --output-dir`): read, not encoded again "
        "(default: encode it)",
    )
