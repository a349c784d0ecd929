"""The job layer without models: seeds, plans, manifest rows, resume, crash leftovers, worker processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from gafu.errors import GafuError
from gafu.image import atomic_write
from gafu.jobs import build_plan, derive_seed, read_rows, run_plan, settings_hash, sha256_bytes, sub_seed
from gafu.jobs.manifest import RowLog, canonical_json, stale_temp_files

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class CopyFactory:
    """A model-free worker: writes the input's bytes followed by the item's seed."""

    in_dir: str
    out_dir: str
    fail_on: str = ""

    def __call__(self):
        def work(item):
            if self.fail_on and self.fail_on in item.input:
                raise ValueError(f"refused {item.input}\nsecond line")
            data = (Path(self.in_dir) / item.input).read_bytes() + str(item.seed).encode()
            atomic_write(Path(self.out_dir) / item.output, lambda fh: fh.write(data))
            return {"output_sha256": sha256_bytes(data), "pid": os.getpid()}

        return work


@dataclass
class DyingFactory:
    """A worker process that dies (as if killed for memory) on every item."""

    def __call__(self):
        def work(item):
            os._exit(9)

        return work


def _tree(root: Path) -> Path:
    for rel in ("b/two.png", "a/one.jpg", "a/deep/three.png", "notes.txt", "a/.hidden.png", ".git/x.png"):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rel.encode())
    (root / "LICENSE").write_text("CC BY-NC-SA 4.0\nfull text ...\n")
    return root


def test_derive_seed_is_stable_and_independent_of_python_hash():
    s = derive_seed(7, "cats/a.png", 1)
    assert s == derive_seed(7, "cats/a.png", 1)
    assert 0 <= s < 2**63
    assert len({s, derive_seed(8, "cats/a.png", 1), derive_seed(7, "cats/b.png", 1), derive_seed(7, "cats/a.png", 0)}) == 4
    assert sub_seed(s, "style") != sub_seed(s, "vector")
    code = "from gafu.jobs import derive_seed; print(derive_seed(7, 'cats/a.png', 1))"
    for hashseed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hashseed, "PYTHONPATH": str(ROOT)}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert int(out.stdout) == s
    with pytest.raises(GafuError, match="seed"):
        derive_seed("7", "a.png", 0)


def test_settings_hash_ignores_key_order():
    assert settings_hash({"a": 1, "b": [1, 2]}) == settings_hash({"b": [1, 2], "a": 1})
    assert settings_hash({"a": 1}) != settings_hash({"a": 2})
    assert canonical_json({"b": 1, "a": Path("x/y")}) == '{"a":"x/y","b":1}'


def test_plan_mirrors_the_tree(tmp_path):
    src = _tree(tmp_path / "in")
    plan = build_plan(src, tmp_path / "out", settings={"m": 1}, seed=3, variants=2)
    assert [it.output for it in plan.items] == [
        "a/deep/three__v0.png", "a/deep/three__v1.png", "a/one__v0.png", "a/one__v1.png",
        "b/two__v0.png", "b/two__v1.png",
    ]
    assert plan.skipped == ["notes.txt"]  # hidden files and folders ignored, licence read
    assert plan.licence["file"] == "LICENSE" and plan.licence["text"].startswith("CC BY-NC-SA 4.0")
    assert plan.items[0].seed == derive_seed(3, "a/deep/three.png", 0)
    keep = build_plan(src, tmp_path / "out", settings={"m": 1}, ext="keep", limit=3)
    assert [it.output for it in keep.items] == ["a/deep/three__v0.png", "a/one__v0.jpg", "b/two__v0.png"]
    # the settings hash of an item covers the job settings
    other = build_plan(src, tmp_path / "out", settings={"m": 2}, seed=3, variants=2)
    assert other.items[0].settings_hash != plan.items[0].settings_hash


def test_plan_refuses_bad_layouts(tmp_path):
    src = _tree(tmp_path / "in")
    with pytest.raises(GafuError, match="inside the input"):
        build_plan(src, src / "out", settings={})
    with pytest.raises(GafuError, match="does not exist"):
        build_plan(tmp_path / "nope", tmp_path / "out", settings={})
    (src / "a" / "one.png").write_bytes(b"x")  # a/one.jpg and a/one.png -> a/one__v0.png
    with pytest.raises(GafuError, match="both be written"):
        build_plan(src, tmp_path / "out", settings={})
    assert len(build_plan(src, tmp_path / "out", settings={}, ext="keep").items) == 4


def test_read_rows_drops_a_partial_last_line_and_rowlog_cuts_it(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_bytes(b'{"output":"a","n":1}\n{"output":"b","n":2}\n{"output":"c","n"')
    assert [r["output"] for r in read_rows(p)] == ["a", "b"]
    with RowLog(p) as log:
        log.append({"output": "d"})
    assert p.read_bytes().endswith(b'"n":2}\n{"output":"d"}\n')
    assert [r["output"] for r in read_rows(p)] == ["a", "b", "d"]
    p.write_bytes(b'{"output":"a"}\nnot json\n')
    with pytest.raises(GafuError, match="line 2"):
        read_rows(p)


def test_run_resume_and_errors(tmp_path):
    src, out = _tree(tmp_path / "in"), tmp_path / "out"
    plan = build_plan(src, out, settings={"m": 1}, variants=2)
    factory = CopyFactory(str(src), str(out), fail_on="two")
    seen = []
    s = run_plan(plan, factory, on_row=seen.append, common={"tag": "x"})
    assert (s.done, s.failed, s.kept) == (4, 2, 0) and len(seen) == 6
    rows = read_rows(out / "manifest.jsonl")
    assert [r["output"] for r in rows] == [it.output for it in plan.items if "two" not in it.input]
    assert all(r["tag"] == "x" and r["status"] == "ok" for r in rows)
    errors = read_rows(out / "errors.jsonl")
    assert [e["error"] for e in errors] == ["ValueError: refused b/two.png"] * 2  # one line
    # a second run must be told what to do with the folder
    with pytest.raises(GafuError, match="resume"):
        run_plan(plan, factory)
    # resume: complete items are kept, failed ones retried (now fixed), a damaged output redone
    (out / "a/one__v1.png").write_bytes(b"damaged")
    s = run_plan(plan, CopyFactory(str(src), str(out)), resume=True)
    assert (s.done, s.failed, s.kept) == (3, 0, 3)
    rows = read_rows(out / "manifest.jsonl")
    assert [r["output"] for r in rows] == [it.output for it in plan.items]  # no duplicates, plan order
    assert not (out / "errors.jsonl").exists()
    assert (out / "a/one__v1.png").read_bytes().startswith(b"a/one.jpg")
    # changed settings: nothing matches, everything is redone
    plan2 = build_plan(src, out, settings={"m": 2}, variants=2)
    assert run_plan(plan2, CopyFactory(str(src), str(out)), resume=True).done == 6


def test_stop_on_error(tmp_path):
    src, out = _tree(tmp_path / "in"), tmp_path / "out"
    plan = build_plan(src, out, settings={})
    s = run_plan(plan, CopyFactory(str(src), str(out), fail_on="one"), on_error="stop")
    assert s.stopped and s.failed == 1 and s.done == 1 and s.not_run == 1  # three, then one: stop


def test_stale_temp_files_are_removed(tmp_path):
    src, out = _tree(tmp_path / "in"), tmp_path / "out"
    plan = build_plan(src, out, settings={})
    run_plan(plan, CopyFactory(str(src), str(out)))
    leftover = out / "a" / ".one__v0.png.k3j_9x2a.tmp"
    leftover.write_bytes(b"half")
    current = out / ".manifest.jsonl.0123456789ab.tmp"  # today's atomic_write naming
    current.write_bytes(b"half")
    mine = out / "a" / "keep.tmp"
    mine.write_bytes(b"not ours")
    assert sorted(stale_temp_files(out)) == sorted([leftover, current])
    run_plan(plan, CopyFactory(str(src), str(out)), resume=True)
    assert not leftover.exists() and not current.exists() and mine.exists()


def test_local_worker_processes_give_the_same_files(tmp_path):
    src = _tree(tmp_path / "in")
    one, two = tmp_path / "one", tmp_path / "two"
    run_plan(build_plan(src, one, settings={}, variants=3), CopyFactory(str(src), str(one)))
    s = run_plan(build_plan(src, two, settings={}, variants=3), CopyFactory(str(src), str(two)), workers=2)
    assert s.done == 9
    rows = read_rows(two / "manifest.jsonl")
    assert len({r["pid"] for r in rows} - {os.getpid()}) >= 1  # ran in child processes
    for r in read_rows(one / "manifest.jsonl"):
        assert (one / r["output"]).read_bytes() == (two / r["output"]).read_bytes()
    assert json.loads(json.dumps(s.to_dict()))["done"] == 9


def test_workers_dying_again_and_again_stop_the_run_and_resume_finishes_it(tmp_path):
    src = _tree(tmp_path / "in")
    out = tmp_path / "out"
    plan = build_plan(src, out, settings={}, variants=12)  # 36 items
    with pytest.raises(GafuError, match=r"died 4 times .* (\d+) item\(s\) not started .*resume") as err:
        run_plan(plan, DyingFactory(), workers=2)
    not_started = int(err.value.args[0].split(" item(s) not started")[0].rsplit(" ", 1)[1])
    lost = read_rows(out / "errors.jsonl")
    assert lost and all("worker process died" in r["error"] for r in lost)
    assert len(lost) + not_started == 36  # every item either recorded as lost or reported not started
    s = run_plan(build_plan(src, out, settings={}, variants=12), CopyFactory(str(src), str(out)), resume=True)
    assert s.done == 36 and not (out / "errors.jsonl").exists()
    assert len(read_rows(out / "manifest.jsonl")) == 36


def test_run_plan_validates_arguments(tmp_path):
    src, out = _tree(tmp_path / "in"), tmp_path / "out"
    plan = build_plan(src, out, settings={})
    f = CopyFactory(str(src), str(out))
    for kwargs, match in (({"workers": 0}, "workers"), ({"backend": "spark"}, "backend"),
                          ({"on_error": "ignore"}, "on_error"), ({"resume": True, "overwrite": True}, "one of")):
        with pytest.raises(GafuError, match=match):
            run_plan(plan, f, **kwargs)
    assert not out.exists()


def test_ray_backend_without_ray_is_an_error_before_any_file(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    src, out = _tree(tmp_path / "in"), tmp_path / "out"
    plan = build_plan(src, out, settings={})
    with pytest.raises(GafuError, match=r"gafu\[ray\]"):
        run_plan(plan, CopyFactory(str(src), str(out)), backend="ray")
    assert not out.exists()


class _StuckPool:
    """Stands in for a ProcessPoolExecutor whose workers are real processes: ``shutdown(wait=True)``
    waits for every worker, as the executor does (and, when a worker blocks on a lock a dead worker
    held, waits for ever)."""

    def __init__(self, procs):
        self._processes = {p.pid: p for p in procs}
        self.shutdowns = []

    def shutdown(self, wait=True, cancel_futures=False):
        self.shutdowns.append(wait)
        if wait:
            for p in self._processes.values():
                p.join()


def _spawn_sleepers(n):
    import multiprocessing
    import time

    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=time.sleep, args=(3600,)) for _ in range(n)]
    for p in procs:
        p.start()
    return procs


def test_closing_a_pool_kills_workers_left_blocked_by_a_dead_one():
    import signal
    import time

    from gafu.jobs.runner import _close_pool

    stuck, dead = _spawn_sleepers(2)
    try:
        dead.kill()
        dead.join()
        pool = _StuckPool([stuck, dead])
        t0 = time.monotonic()
        _close_pool(pool, broken=False, grace=600)  # a worker died of a signal: no waiting for the rest
        assert time.monotonic() - t0 < 60
        assert stuck.exitcode == -signal.SIGKILL and pool.shutdowns == [False, True]
    finally:
        for p in (stuck, dead):
            p.kill()


def test_closing_a_pool_kills_workers_that_do_not_stop_within_the_grace():
    import time

    from gafu.jobs.runner import _close_pool

    (stuck,) = _spawn_sleepers(1)
    try:
        t0 = time.monotonic()
        _close_pool(_StuckPool([stuck]), broken=False, grace=1.0)
        assert 1.0 <= time.monotonic() - t0 < 60 and not stuck.is_alive()
    finally:
        stuck.kill()


def test_closing_a_healthy_pool_lets_its_workers_finish(tmp_path):
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing

    from gafu.jobs.runner import _close_pool

    pool = ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn"))
    assert list(pool.map(abs, [-1, -2, -3])) == [1, 2, 3]
    procs = list(pool._processes.values())
    _close_pool(pool, broken=False)
    assert procs and all(p.exitcode == 0 for p in procs)  # stopped by the executor, not killed
