"""The Ray backend: the same job, manifest and resume semantics on a Ray cluster (``pip install gafu[ray]``).

Imported only when ``backend='ray'`` is asked for. Each worker is a Ray *actor* that builds the
worker once (models loaded once per actor) and processes items sent to it by an
:class:`ray.util.ActorPool`; the actors write the output files (Ray's own image writer cannot
mirror a folder tree) and return rows; this process (the driver) writes the manifest, so resume
works exactly as with the local backend. The output folder must be reachable at the same path
from every node (a shared file system) on a multi-node cluster.

Resources: each actor asks for ``cpus_per_worker`` CPUs (default 0.5) and ``gpus_per_worker``
GPUs. On a small machine, actors asking for whole CPUs can take every CPU and starve Ray's other
tasks; fractions leave room (the actors' own thread count is set by the worker, not by Ray).

Cluster: ``address`` ('auto' or 'host:port') joins a running cluster; without one, a Ray session
already started in this process (``ray.init(...)``) is used, else a local one is started on
127.0.0.1 (no dashboard) and shut down at the end.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, Iterator, List, Optional

from ..errors import GafuError
from .plan import Item
from .runner import WorkerFactory, run_one

#: Default CPUs each actor requests (a fraction: see the module docstring).
DEFAULT_CPUS_PER_WORKER = 0.5


def import_ray():
    try:
        import ray
    except ImportError:
        raise GafuError("backend 'ray' needs Ray: pip install 'gafu[ray]' (or pip install ray)") from None
    return ray


class _Actor:
    """Holds one worker for the life of the actor."""

    def __init__(self, factory: WorkerFactory) -> None:
        self.worker = factory()

    def run(self, item: Item) -> Dict[str, Any]:
        return run_one(self.worker, item)

    def ready(self) -> int:
        return os.getpid()


def _last_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


def _check_fraction(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise GafuError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


def execute(
    todo: List[Item],
    factory: WorkerFactory,
    *,
    workers: int,
    stop: Callable[[], bool],
    address: Optional[str] = None,
    cpus_per_worker: float = DEFAULT_CPUS_PER_WORKER,
    gpus_per_worker: float = 0.0,
) -> Iterator[Dict[str, Any]]:
    """Yield one row per item of ``todo``, computed by ``workers`` Ray actors (see the module doc)."""
    cpus = _check_fraction("cpus_per_worker", cpus_per_worker)
    gpus = _check_fraction("gpus_per_worker", gpus_per_worker)
    if not todo:
        return
    ray = import_ray()
    from ray.util import ActorPool

    started = False
    if address is not None:
        if ray.is_initialized():
            raise GafuError("a Ray session is already running in this process; leave out the address to use it")
        try:
            ray.init(address=address, log_to_driver=False, logging_level="warning")
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise GafuError(f"cannot connect to the Ray cluster at {address}: {str(exc).splitlines()[0]}") from None
        started = True
    elif not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False, logging_level="warning",
                 _node_ip_address="127.0.0.1")
        started = True
    actors: list = []
    try:
        remote = ray.remote(num_cpus=cpus, num_gpus=gpus, max_restarts=0)(_Actor)
        n = max(1, min(workers, len(todo)))
        actors = [remote.remote(factory) for _ in range(n)]
        try:
            ray.get([a.ready.remote() for a in actors])  # a factory error surfaces once, here
        except ray.exceptions.RayError as exc:
            raise GafuError(f"Ray workers could not start: {_last_line(exc)}") from None
        pool = ActorPool(actors)
        queue = list(reversed(todo))

        def submit() -> None:
            item = queue.pop()
            pool.submit(lambda actor, it: actor.run.remote(it), item)

        for _ in range(min(len(queue), 2 * n)):
            submit()
        while pool.has_next():
            try:
                row = pool.get_next_unordered()
            except ray.exceptions.RayError as exc:
                raise GafuError(f"a Ray worker failed: {_last_line(exc)}") from None
            yield row
            if queue and not stop():
                submit()
    finally:
        for a in actors:
            try:
                ray.kill(a)
            except Exception:  # pragma: no cover - already gone
                pass
        if started:
            ray.shutdown()
