"""Plan -> run: every item written atomically and recorded in the manifest, resumable after any crash.

The work of one item is done by a *worker*: ``worker(item) -> dict`` writes the item's output
(atomically, e.g. with :func:`gafu.image.atomic_write`) and returns the row's fields (at least
``output_sha256``), or raises with a one-line reason. Workers are built by a *factory*, a
picklable callable with no arguments, once per process (models load once per worker), so the same
factory serves this process, local worker processes and Ray actors.

Crash safety, step by step (a ``kill -9`` can hit between any two of them):

1. the worker writes ``.<name>.<random>.tmp`` next to the output and renames it over the output;
2. the driver appends the item's row to ``manifest.jsonl`` (one flushed write of a whole line);
3. at the end the manifest is rewritten compacted (one row per output, plan order), atomically.

A crash after 1 leaves an output without a row: ``resume`` redoes that item (seeded, so the bytes
are the same) and writes its row. A crash in 2 leaves a partial last line: it is ignored and cut
off. A crash in 3 leaves the old file and a temp file, which the next run deletes. So after any
crash, ``resume`` ends with the same files and rows as an uninterrupted run, with no duplicates
and no temp files.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

from ..errors import GafuError
from .manifest import (
    ROW_SCHEMA,
    RowLog,
    latest_by,
    one_line,
    read_rows,
    row_matches,
    stale_temp_files,
    write_rows_atomic,
)
from .plan import Item, Plan

Worker = Callable[[Item], Dict[str, Any]]
WorkerFactory = Callable[[], Worker]
RowCallback = Callable[[Dict[str, Any]], None]

BACKENDS = ("local", "ray")
ON_ERROR = ("skip", "stop")
#: Hidden lock file in the output folder: one run per output folder at a time.
LOCK_NAME = ".gafu-job.lock"
#: Items queued per worker beyond the one it is running (keeps workers busy, memory bounded).
QUEUE_PER_WORKER = 2
#: How often a local worker pool that lost a process is restarted before the run stops.
MAX_POOL_RESTARTS = 3


@dataclass
class RunSummary:
    """What a run did. ``done``: items produced now; ``kept``: found complete (resume)."""

    planned: int
    done: int = 0
    kept: int = 0
    failed: int = 0
    not_run: int = 0  # left out after a stop (on_error='stop')
    stopped: bool = False
    seconds: float = 0.0
    backend: str = "local"
    workers: int = 1
    errors: List[Dict[str, Any]] = field(default_factory=list)  # this run's error rows
    skipped_files: List[str] = field(default_factory=list)

    @property
    def images_per_s(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["errors"] = [{k: r.get(k) for k in ("input", "output", "error")} for r in self.errors]
        d["images_per_s"] = round(self.images_per_s, 4)
        d["seconds"] = round(self.seconds, 4)
        return d


def run_one(worker: Worker, item: Item) -> Dict[str, Any]:
    """Run one item; return its row (status 'ok' with the worker's fields, or 'error' with a reason)."""
    t0 = time.perf_counter()
    row: Dict[str, Any] = {
        "output": item.output,
        "input": item.input,
        "variant": item.variant,
        "seed": item.seed,
        "style": item.style,
        "settings_hash": item.settings_hash,
    }
    try:
        fields = worker(item)
    except Exception as exc:  # every failure of one item becomes its error row
        row.update(status="error", error=one_line(exc))
    else:
        row.update(fields)
        row["status"] = "ok"
        if not isinstance(row.get("output_sha256"), str):
            row.update(status="error", error="worker returned no output_sha256")
    row["seconds"] = round(time.perf_counter() - t0, 4)
    return row


# ---------------------------------------------------------------------------------------------
# backends: each yields rows for ``todo`` until done or ``stop()`` is true (then drains)


def _in_process(todo: List[Item], factory: WorkerFactory, stop: Callable[[], bool]) -> Iterator[Dict[str, Any]]:
    worker = factory()
    for item in todo:
        if stop():
            return
        yield run_one(worker, item)


# The worker object of a local worker process (set by its initializer; this module-level slot is
# only ever filled inside the pool's child processes, never in the caller's).
_PROCESS_WORKER: Optional[Worker] = None


def _init_process(factory: WorkerFactory) -> None:
    global _PROCESS_WORKER
    _PROCESS_WORKER = factory()


def _process_item(item: Item) -> Dict[str, Any]:
    if _PROCESS_WORKER is None:  # pragma: no cover - initializer failed
        raise RuntimeError("worker process was not initialised")
    return run_one(_PROCESS_WORKER, item)


def _local_pool(todo: List[Item], factory: WorkerFactory, workers: int, stop: Callable[[], bool],
                start_method: str) -> Iterator[Dict[str, Any]]:
    ctx = multiprocessing.get_context(start_method)
    queue = list(reversed(todo))
    restarts = 0
    while queue:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_process,
                                   initargs=(factory,))
        pending: Dict[Any, Item] = {}
        broken = False
        try:
            while queue or pending:
                while queue and not stop() and len(pending) < workers * (1 + QUEUE_PER_WORKER):
                    item = queue.pop()
                    pending[pool.submit(_process_item, item)] = item
                if not pending:
                    break
                finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for fut in finished:
                    item = pending.pop(fut)
                    try:
                        yield fut.result()
                    except BrokenProcessPool:
                        broken = True
                        yield _lost(item)
                    except Exception as exc:  # e.g. an unpicklable result
                        yield {**_lost(item), "error": one_line(exc)}
                if broken:
                    for fut, item in pending.items():
                        yield _lost(item)
                    pending.clear()
                    break
                if stop() and not pending:
                    return
        finally:
            _close_pool(pool, broken=broken)
        if not broken or stop():
            return
        restarts += 1
        if restarts > MAX_POOL_RESTARTS:
            raise GafuError(f"worker processes died {restarts} times (out of memory?); stopping with "
                            f"{len(queue)} item(s) not started (the manifest keeps what was done: resume continues)")


def _close_pool(pool: ProcessPoolExecutor, *, broken: bool, grace: float = 60.0) -> None:
    """Shut ``pool`` down without ever waiting for ever.

    ``ProcessPoolExecutor.shutdown(wait=True)`` can hang when a worker died: a worker killed while it
    held the call queue's lock (an idle worker holds it while it waits for work) leaves the others
    blocked on that lock, so they never read the "stop" the executor sends, and the executor waits for
    them for ever; CPython only terminates the others when it notices the death before it starts
    shutting down (seen: a dataset run whose worker was killed near its end hung until CI's time
    limit). So: ask the workers to stop, and as soon as one of them has died of a signal or crashed,
    or none stopped within ``grace`` seconds, kill the rest. The pool's process table is private,
    hence the ``getattr``; every submit has returned by now, so the snapshot lists every worker.
    """
    procs = list(getattr(pool, "_processes", {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + grace
    while True:
        alive = [p for p in procs if p.is_alive()]
        died = broken or any(p.exitcode not in (None, 0) for p in procs)
        if not alive:
            break
        if died or time.monotonic() > deadline:
            for proc in alive:
                try:
                    proc.kill()
                except (OSError, ValueError):  # pragma: no cover - reaped meanwhile
                    pass
            for proc in alive:
                proc.join(5.0)
            break
        time.sleep(0.05)
    pool.shutdown(wait=True)  # joins the executor's own thread, now that no worker can block it


def _lost(item: Item) -> Dict[str, Any]:
    return {
        "output": item.output, "input": item.input, "variant": item.variant, "seed": item.seed,
        "style": item.style, "settings_hash": item.settings_hash, "status": "error",
        "error": "worker process died while this item was queued or running (out of memory?)",
    }


# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _exclusive(out_dir: Path):
    """Hold an exclusive lock on the output folder (released by the OS even after kill -9)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock
        yield
        return
    fh = open(out_dir / LOCK_NAME, "a+b")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise GafuError(f"another run is writing to {out_dir} (locked); wait for it or choose another folder") from None
        yield
    finally:
        fh.close()


def check_out_dir(plan: Plan, *, resume: bool, overwrite: bool) -> None:
    """Refuse to touch a previous run's folder unless told to resume or overwrite it."""
    if resume and overwrite:
        raise GafuError("resume continues a run, overwrite starts it again: give one of them")
    if resume or overwrite or not plan.out_dir.exists():
        return
    if plan.manifest_path.exists():
        raise GafuError(
            f"{plan.out_dir} already holds a run ({plan.manifest_path.name}); "
            "pass resume to continue it or overwrite to start again"
        )
    existing = next((it.output for it in plan.items if (plan.out_dir / it.output).exists()), None)
    if existing is not None:
        raise GafuError(f"{plan.out_dir / existing} already exists; pass overwrite to replace it")


def check_run_options(backend: str, on_error: str, workers) -> None:
    """GafuError for an unknown backend or on_error value, or a worker count that is not >= 1
    (checked once, for every caller: the dataset API checks before any model loads)."""
    if backend not in BACKENDS:
        raise GafuError(f"unknown backend '{backend}'; choose from: {', '.join(BACKENDS)}")
    if on_error not in ON_ERROR:
        raise GafuError(f"unknown on_error '{on_error}'; choose from: {', '.join(ON_ERROR)}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise GafuError(f"workers must be a whole number >= 1, got {workers!r}")


def run_plan(
    plan: Plan,
    factory: WorkerFactory,
    *,
    resume: bool = False,
    overwrite: bool = False,
    workers: int = 1,
    backend: str = "local",
    on_error: str = "skip",
    on_row: Optional[RowCallback] = None,
    on_start: Optional[Callable[[int, int], None]] = None,
    common: Optional[Dict[str, Any]] = None,
    start_method: str = "spawn",
    ray_options: Optional[Dict[str, Any]] = None,
) -> RunSummary:
    """Run ``plan``: produce every item not already complete, record one manifest row per output.

    Args:
        factory: builds the worker (once per process); see the module docstring.
        resume: skip items whose output exists and whose manifest row matches (settings hash and
            output sha256); without it a folder holding a previous run is refused.
        overwrite: start again in a folder holding a previous run (outputs are replaced).
        workers: local worker processes (1: this process), or Ray actors with backend='ray'.
        backend: 'local' or 'ray' (:mod:`gafu.jobs.ray`, needs ``pip install gafu[ray]``).
        on_error: 'skip' (record the error row, go on) or 'stop' (finish running items, stop).
        on_row: called in this process with each row as it is recorded (progress bars).
        on_start: called once with (items to run, items kept) before the first item runs.
        common: fields added to every row (versions, licence, ...).
        start_method: 'spawn' or 'forkserver' for local worker processes.
        ray_options: passed to :func:`gafu.jobs.ray.execute` (address, cpus/gpus per worker).
    """
    check_run_options(backend, on_error, workers)
    if start_method not in ("spawn", "forkserver"):
        raise GafuError(f"start_method must be 'spawn' or 'forkserver', got {start_method!r}")
    if backend == "ray":
        from .ray import import_ray

        import_ray()  # a missing extra is an error before the output folder is touched
    check_out_dir(plan, resume=resume, overwrite=overwrite)
    t0 = time.perf_counter()
    out_dir = plan.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = RunSummary(planned=len(plan.items), backend=backend, workers=workers,
                         skipped_files=list(plan.skipped))
    common = {"schema": ROW_SCHEMA, **(common or {})}
    with _exclusive(out_dir):
        for tmp in stale_temp_files(out_dir):
            tmp.unlink(missing_ok=True)
        previous = read_rows(plan.manifest_path) if resume else []
        old_errors = read_rows(plan.errors_path) if resume else []
        by_output = latest_by(previous, "output")
        todo, kept_rows = [], {}
        for item in plan.items:
            row = by_output.get(item.output)
            if resume and row_matches(row, item.settings_hash, out_dir / item.output, root=out_dir):
                kept_rows[item.output] = row
            else:
                todo.append(item)
        summary.kept = len(kept_rows)
        if on_start is not None:
            on_start(len(todo), len(kept_rows))
        new_rows: Dict[str, Dict[str, Any]] = {}
        new_errors: Dict[str, Dict[str, Any]] = {}
        stopping = False

        def stop() -> bool:
            return stopping

        manifest = RowLog(plan.manifest_path, truncate=not resume)
        if not resume and plan.errors_path.exists():
            plan.errors_path.unlink()  # a previous run's errors (overwrite)
        errors: Optional[RowLog] = None  # opened at the first error
        try:
            if backend == "ray":
                from . import ray as ray_backend

                rows = ray_backend.execute(todo, factory, workers=workers, stop=stop, **(ray_options or {}))
            elif workers == 1 or len(todo) <= 1:
                rows = _in_process(todo, factory, stop)
            else:
                rows = _local_pool(todo, factory, min(workers, len(todo)), stop, start_method)
            for row in rows:
                row = {**row, **common}
                if row["status"] == "ok":
                    manifest.append(row)
                    new_rows[row["output"]] = row
                    new_errors.pop(row["output"], None)
                    summary.done += 1
                else:
                    if errors is None:
                        errors = RowLog(plan.errors_path)
                    errors.append(row)
                    new_errors[row["output"]] = row
                    summary.failed += 1
                    summary.errors.append(row)
                    if on_error == "stop":
                        stopping = True
                if on_row is not None:
                    on_row(row)
        finally:
            manifest.close()
            if errors is not None:
                errors.close()
            _compact(plan, previous, kept_rows, new_rows, old_errors, new_errors)
    summary.stopped = stopping
    summary.not_run = summary.planned - summary.kept - summary.done - summary.failed
    summary.seconds = time.perf_counter() - t0
    return summary


def _compact(plan: Plan, previous: list, kept: dict, new: dict, old_errors: list, new_errors: dict) -> None:
    """Rewrite manifest.jsonl (one row per output, plan order) and errors.jsonl atomically."""
    planned = [it.output for it in plan.items]
    in_plan = set(planned)
    rows = []
    for out in planned:
        row = new.get(out) or kept.get(out)
        if row is not None:
            rows.append(row)
    # Rows of outputs outside this plan (an earlier run with another limit) stay if still intact.
    for out, row in latest_by(previous, "output").items():
        if out not in in_plan and row.get("status") == "ok" and (plan.out_dir / out).is_file():
            rows.append(row)
    write_rows_atomic(plan.manifest_path, rows)
    done = {r["output"] for r in rows}
    errs = latest_by(old_errors, "output")
    errs.update(new_errors)
    order = {out: i for i, out in enumerate(planned)}
    left = sorted((r for out, r in errs.items() if out not in done), key=lambda r: order.get(r["output"], len(order)))
    if left:
        write_rows_atomic(plan.errors_path, left)
    elif plan.errors_path.exists():
        os.unlink(plan.errors_path)
