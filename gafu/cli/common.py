"""Helpers shared by the subcommands: argument types, device choice, progress, JSON output."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, Callable

from ..errors import GafuError


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def nonneg_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got '{text}'")
    return value


def positive_float(text: str) -> float:
    value = nonneg_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected a number > 0, got 0")
    return value


def name_list(text: str) -> tuple[str, ...]:
    items = tuple(s.strip() for s in text.split(",") if s.strip())
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list of names")
    return items


def int_list(text: str) -> tuple[int, ...]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list of whole numbers")
    return tuple(nonneg_int(s) for s in items)


def fraction_list(text: str) -> tuple[float, ...]:
    out = []
    for s in (s.strip() for s in text.split(",") if s.strip()):
        value = nonneg_float(s)
        if not 0 < value < 1:
            raise argparse.ArgumentTypeError(f"expected fractions between 0 and 1, got '{s}'")
        out.append(value)
    if not out:
        raise argparse.ArgumentTypeError("expected a comma-separated list of fractions")
    return tuple(out)


def float_list(text: str) -> tuple[float, ...]:
    out = []
    for s in text.split(","):
        out.append(nonneg_float(s.strip()))
    if not out:
        raise argparse.ArgumentTypeError("expected a comma-separated list of numbers")
    return tuple(out)


def add_device_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda", "auto"),
        default="cpu",
        help="where to compute; 'cuda' without a CUDA device is an error, 'auto' picks CUDA if present (default: cpu)",
    )


def resolve_device(name: str) -> str:
    """Map cpu|cuda|auto to a torch device string; never falls back silently."""
    import torch

    if name == "cpu":
        return "cpu"
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise GafuError("--device cuda was asked for, but this torch build sees no CUDA device")
        return name
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    raise GafuError(f"unknown device '{name}'; choose from: cpu, cuda, auto")


def progress(total: int, desc: str) -> Any:
    """A tqdm bar on stderr, shown only when stderr is a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, disable=None, dynamic_ncols=True, leave=False)


def print_json(data: dict) -> None:
    from ..report import json_default

    json.dump(data, sys.stdout, indent=2, sort_keys=False, default=json_default)
    sys.stdout.write("\n")




Handler = Callable[[argparse.Namespace], int]
