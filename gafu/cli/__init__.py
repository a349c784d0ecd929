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
    "web",
    "dataset",
    "video",
    "defects",
)

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader closed the pipe


def one_line(text: str) -> str:
    """``text`` safe to print as one line: newlines and other control characters (from a file name
    or an argument) are shown escaped, as repr() would; printable text, Japanese included, is kept."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(text))


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 2 (argparse's own convention, kept)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {one_line(message)}\n")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(prog="gafu", description="gafu (画風): neural style transfer toolkit.")
    parser.add_argument("--version", action="version", version=f"gafu {__version__}")
    parser.add_argument("--max-pixels", type=int, metavar="N",
                        help="refuse images whose header claims more than N pixels (a decompression bomb guard; "
                        "default 89478485, or $GAFU_MAX_PIXELS)")
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
        _own_the_process(args)
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below, not at exit
        return code
    except GafuError as exc:
        print(f"gafu {args.command}: error: {one_line(exc.for_client())}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"gafu {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `gafu ... --json | head`: the reader left; stop quietly, as Unix tools do
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return EXIT_BROKEN_PIPE


def _own_the_process(args: argparse.Namespace) -> None:
    """Process-wide settings that only a program owning its process may make (the library never
    does): library warnings are not shown (a user reads gafu's own one-line messages; -W or
    PYTHONWARNINGS still apply), and gafu's pixel limit replaces Pillow's global one."""
    import os
    import warnings

    if not sys.warnoptions:
        warnings.simplefilter("ignore")
    if args.max_pixels is not None:
        if args.max_pixels < 1:
            raise GafuError(f"--max-pixels must be >= 1, got {args.max_pixels}")
        os.environ["GAFU_MAX_PIXELS"] = str(args.max_pixels)
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # gafu.image checks every header against its own limit


def entry_point() -> None:  # console script
    sys.exit(main())
