"""The job layer: a dataset job is data (a plan of items), run item by item, recorded in a manifest.

- :mod:`gafu.jobs.manifest`: derived seeds, settings hashes, sha256, manifest/error rows
  (``manifest.jsonl``, ``errors.jsonl``) read tolerantly and written append-only + compacted atomically.
- :mod:`gafu.jobs.plan`: an input tree -> a sorted list of :class:`Item` (mirrored output paths,
  per-item seed and style choice), non-image files listed, the optional licence file read.
- :mod:`gafu.jobs.runner`: plan -> run, with ``resume`` (items whose output and manifest row match
  are skipped), atomic per item, in this process or in local worker processes.
- :mod:`gafu.jobs.ray`: the same run on a Ray cluster (``pip install gafu[ray]``); imported only
  when asked for.

Nothing here knows about stylization: the work of one item is a picklable *worker factory*
(see :class:`gafu.jobs.runner.Worker`); :mod:`gafu.dataset` supplies the stylizing one.
"""

from __future__ import annotations

from .manifest import (
    ERRORS_NAME,
    MANIFEST_NAME,
    derive_seed,
    read_rows,
    settings_hash,
    sha256_bytes,
    sha256_file,
    sub_seed,
)
from .plan import Item, Plan, build_plan
from .runner import RunSummary, Worker, run_plan

__all__ = [
    "ERRORS_NAME",
    "MANIFEST_NAME",
    "Item",
    "Plan",
    "RunSummary",
    "Worker",
    "build_plan",
    "derive_seed",
    "read_rows",
    "run_plan",
    "settings_hash",
    "sha256_bytes",
    "sha256_file",
    "sub_seed",
]
