"""Errors a user can cause and fix. The CLI prints them as one line (exit code 2)."""

from __future__ import annotations

import difflib
from typing import Iterable


class GafuError(Exception):
    """A user-facing error: bad input, missing file, unknown name. Message is one line."""


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> GafuError:
    """Build an 'unknown X' error with a did-you-mean suggestion."""
    choices = list(choices)
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else f"; choose from: {', '.join(choices)}"
    return GafuError(f"unknown {kind} '{name}'{hint}")
