"""Entry point of the ``retrievals-rag`` command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from retrievals_rag import __version__
from retrievals_rag.cli import app, bench, convert, encode, evaluate, index, merge, mine, train


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retrievals-rag",
        description="Fine-tune, evaluate and serve retrieval models.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (evaluate, encode, merge, bench, mine, convert, train, index, app):
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        return int(args.handler(args) or 0)
    except (ValueError, OSError) as error:  # bad input: a message, not a traceback (unless --verbose)
        if args.verbose:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
