"""Command-line interface: ``gafu SUBCOMMAND ...``. A thin client of the library.

Each subcommand lives in its own module with ``register(subparsers)`` that adds a parser whose
``func(args) -> int`` does the work. User mistakes raise :class:`gafu.errors.GafuError`; ``main``
turns them into one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from ..errors import GafuError

#: Subcommand modules, in the order ``gafu --help`` lists them.
COMMAND_MODULES = (
    "stylize",
    "demo",
    "fast",
    "compare",
    "classify",
    "layers",
    "analyze",
    "video",
)

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 2 (argparse's own convention, kept)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(prog="gafu", description="gafu (画風): neural style transfer toolkit.")
    parser.add_argument("--version", action="version", version=f"gafu {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors: return the code instead of exiting
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except GafuError as exc:
        print(f"gafu {args.command}: error: {exc.for_client()}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"gafu {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def entry_point() -> None:  # console script
    sys.exit(main())
