"""Manifest rows, derived seeds and settings hashes: what makes a dataset job reproducible and resumable.

Files in the output folder
    ``manifest.jsonl``: one JSON object per line, one line per output (``status`` "ok").
    ``errors.jsonl``: one line per item that failed (``status`` "error", ``error``: one-line reason).

Crash safety (a ``kill -9`` at any moment)
    Rows are appended with one ``write`` of a whole line and flushed, so after a crash the file
    holds complete rows plus at most one partial last line. :func:`read_rows` ignores a partial
    last line; :class:`RowLog` cuts it off before appending. At the end of a run the file is
    rewritten *compacted* (one row per output, plan order) atomically (temp file + rename), so a
    crash leaves either the old or the new file, never a mix.

Seeds
    :func:`derive_seed` hashes (run seed, relative path, variant) with BLAKE2b, never Python's
    ``hash()`` (salted per process), so one file can be regenerated alone, on any machine, in any
    order, and gets the same randomness.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Union

from ..errors import GafuError

MANIFEST_NAME = "manifest.jsonl"
ERRORS_NAME = "errors.jsonl"
#: Version of the row layout (bumped when fields change meaning).
ROW_SCHEMA = 1
#: Seeds are 63-bit so that torch, numpy and JSON readers all take them as they are.
SEED_BITS = 63

PathLike = Union[str, os.PathLike]

# gafu.image.atomic_write names its temporary files ".<name>.<random token>.tmp" (12 hex digits;
# 8 characters from mkstemp in earlier versions).
_TEMP_RE = re.compile(r"^\..+\.[A-Za-z0-9_]{8,16}\.tmp$")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _seed_of(*parts: Any) -> int:
    h = hashlib.blake2b(digest_size=8, person=b"gafu-seed")
    for p in parts:
        h.update(str(p).encode("utf-8"))
        h.update(b"\x00")
    return int.from_bytes(h.digest(), "big") >> (64 - SEED_BITS)


def derive_seed(seed: int, relative_path: str, variant: int) -> int:
    """The item's seed: BLAKE2b of (run seed, POSIX relative path of the input, variant), 63 bits."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise GafuError(f"seed must be a whole number, got {seed!r}")
    return _seed_of("item", seed, relative_path, variant)


def sub_seed(item_seed: int, purpose: str) -> int:
    """An independent seed for one use of an item's randomness ('style', 'vector', 'init', ...)."""
    return _seed_of("sub", item_seed, purpose)


def canonical_json(data: Any) -> str:
    """JSON with sorted keys and no spaces: equal data gives equal text (and hash)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=_plain)


def settings_hash(data: Any) -> str:
    """sha256 of :func:`canonical_json` (the first 16 hex digits are shown in summaries)."""
    return hashlib.sha256(canonical_json(data).encode("ascii")).hexdigest()


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return value.as_posix()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"not JSON data: {type(value).__name__}")


def read_rows(path: PathLike) -> List[Dict[str, Any]]:
    """All complete rows of a JSON-lines file (missing file: none).

    A last line without its newline (a write cut short by a crash) is ignored; a damaged line
    elsewhere is an error, since that is not what a crash leaves behind.
    """
    p = Path(path)
    if not p.exists():
        return []
    data = p.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise GafuError(f"{p} line {n} is not a JSON row; the file was edited or damaged") from None
        if not isinstance(row, dict):
            raise GafuError(f"{p} line {n} is not a JSON object")
        rows.append(row)
    del tail  # partial row from an interrupted write: dropped
    return rows


def latest_by(rows: Iterable[Dict[str, Any]], key: str) -> Dict[str, Dict[str, Any]]:
    """key value -> the last row with it (later rows supersede earlier ones)."""
    out: Dict[str, Dict[str, Any]] = {}
    for row in rows:
        k = row.get(key)
        if isinstance(k, str):
            out.pop(k, None)
            out[k] = row
    return out


class RowLog:
    """An append-only JSON-lines file, crash-safe: whole lines, flushed one by one.

    Opening cuts off a partial last line left by a crash, so the next row starts on its own line.
    """

    def __init__(self, path: PathLike, *, truncate: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if truncate:
            self._fh = open(self.path, "wb")
        else:
            self._fh = open(self.path, "ab+")
            self._cut_partial_line()
        self.written = 0

    def _cut_partial_line(self) -> None:
        fh = self._fh
        end = fh.seek(0, io.SEEK_END)
        if end == 0:
            return
        fh.seek(end - 1)
        if fh.read(1) == b"\n":
            return
        # Find the last newline (files are small enough to scan back in blocks).
        pos, block = end, 1 << 16
        keep = 0
        while pos > 0:
            start = max(0, pos - block)
            fh.seek(start)
            chunk = fh.read(pos - start)
            i = chunk.rfind(b"\n")
            if i >= 0:
                keep = start + i + 1
                break
            pos = start
        fh.truncate(keep)
        fh.seek(0, io.SEEK_END)

    def append(self, row: Dict[str, Any]) -> None:
        line = (canonical_json(row) + "\n").encode("ascii")
        self._fh.write(line)
        self._fh.flush()  # in the kernel's hands: survives kill -9 of this process
        self.written += 1

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            try:
                os.fsync(self._fh.fileno())
            except OSError:  # pragma: no cover - e.g. a pipe or special file system
                pass
            self._fh.close()

    def __enter__(self) -> "RowLog":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def write_rows_atomic(path: PathLike, rows: Iterable[Dict[str, Any]]) -> Path:
    """Replace a JSON-lines file by ``rows`` atomically (temp file in the same folder + rename)."""
    from ..image import atomic_write

    def write(fh) -> None:
        for row in rows:
            fh.write((canonical_json(row) + "\n").encode("ascii"))
        fh.flush()
        os.fsync(fh.fileno())

    return atomic_write(path, write)


def stale_temp_files(folder: PathLike) -> Iterator[Path]:
    """Temporary files left in ``folder`` (recursively) by atomic writes that a crash interrupted."""
    root = Path(folder)
    if not root.is_dir():
        return
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if _TEMP_RE.match(name):
                yield Path(dirpath) / name


def one_line(exc: BaseException) -> str:
    """An exception as one line: 'Type: first line of the message' (GafuError: the message alone)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, GafuError):
        return text or "error"
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def row_matches(row: Optional[Dict[str, Any]], settings_digest: str, output: Path,
                root: Optional[Path] = None) -> bool:
    """True when ``row`` records ``output`` as done with these settings and the file is intact.

    A worker that writes more than one file per item (an image and its mask) lists the others in
    the row's ``also_written`` ({path relative to ``root``: sha256}); they must be intact too.
    """
    if not row or row.get("status") != "ok" or row.get("settings_hash") != settings_digest:
        return False
    if not output.is_file():
        return False
    if sha256_file(output) != row.get("output_sha256"):
        return False
    extra = row.get("also_written") or {}
    if extra and root is None:
        return False
    for rel, sha in extra.items():
        p = Path(root) / rel
        if not p.is_file() or sha256_file(p) != sha:
            return False
    return True
