"""Entry point of the ``retrievals-rag`` command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator, Sequence

from retrievals_rag import __version__
from retrievals_rag.cli import adapt, app, bench, convert, encode, evaluate, export, index, merge, mine, train
from retrievals_rag.cli.common import HelpFormatter, RawDescriptionHelpFormatter

VERBOSE_HELP = "log progress details, and show the traceback of an error"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retrievals-rag",
        description="Fine-tune, evaluate and serve retrieval models.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (evaluate, encode, export, merge, bench, mine, convert, train, adapt, index, app):
        module.register(subparsers)
    for command in subcommands(parser):
        # Defaults in every --help; -v after the subcommand too (SUPPRESS: absent, it keeps the main parser's).
        raw = issubclass(command.formatter_class, argparse.RawDescriptionHelpFormatter)
        command.formatter_class = RawDescriptionHelpFormatter if raw else HelpFormatter
        if not any("-v" in action.option_strings for action in command._actions):
            command.add_argument(
                "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP
            )
    return parser


def subcommands(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """Every subcommand's parser, at any depth (``convert gguf`` included)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                yield child
                yield from subcommands(child)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    passed_on = getattr(args, "options", None)  # `train TASK ...` hands the rest to its own parser
    if isinstance(passed_on, list) and {"-v", "--verbose"} & set(passed_on):
        args.options = [option for option in passed_on if option not in ("-v", "--verbose")]
        args.verbose = True
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        return int(args.handler(args) or 0)
    except (ValueError, OSError, ImportError) as error:  # bad input, a missing package: a message
        if args.verbose:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
