"""Errors a user can cause and fix. The CLI prints them as one line (exit code 2)."""

from __future__ import annotations

import difflib
import re
from typing import Iterable, Mapping, Optional, Tuple, Union


class GafuError(Exception):
    """A user-facing error: bad input, missing file, unknown name. Message is one line.

    The library speaks of its own arguments (``overwrite=True``, ``region_styles``); ``argument``
    names the one concerned, so a client can say it in its own terms (:meth:`for_client`: the CLI
    turns ``overwrite=True`` into ``--overwrite``).
    """

    def __init__(self, message: str, *, argument: Union[str, Tuple[str, ...], None] = None) -> None:
        super().__init__(message)
        self.argument = argument

    def for_client(self, names: Optional[Mapping[str, str]] = None) -> str:
        """The message with the argument spelled as the client spells it: ``names[argument]``, or
        (default) a command-line flag, ``region_styles`` -> ``--region-styles``."""
        text = str(self)
        args = (self.argument,) if isinstance(self.argument, str) else tuple(self.argument or ())
        for arg in args:
            flag = (names or {}).get(arg) or "--" + arg.replace("_", "-")
            text = text.replace(f"{arg}=True", flag)
            text = re.sub(rf"(?<![\w/.-]){re.escape(arg)}(?![\w/.-])", flag, text)
        return text


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> GafuError:
    """Build an 'unknown X' error with a did-you-mean suggestion."""
    choices = list(choices)
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else f"; choose from: {', '.join(choices)}"
    return GafuError(f"unknown {kind} '{name}'{hint}")
