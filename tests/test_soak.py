"""Short soaks (benchmarks/soak.py): gafu web under concurrent clients with a full queue, and a dataset job
whose worker processes are killed with SIGKILL. Loopback only; tiny images.

The web soak needs the extra: pip install gafu[web] (skipped without Gradio).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def soak(monkeypatch_module):
    monkeypatch_module.syspath_prepend(str(ROOT / "benchmarks"))  # as when run as a script: machine.py beside it
    spec = importlib.util.spec_from_file_location("gafu_bench_soak", ROOT / "benchmarks" / "soak.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_rss_summary_and_slope(soak):
    flat = [(float(t), 100.0) for t in range(10)]
    assert soak.slope_mb_per_min(flat) == 0
    rising = [(float(t), 100.0 + t) for t in range(10)]  # 1 MB/s
    assert soak.slope_mb_per_min(rising) == pytest.approx(60.0)
    s = soak.rss_summary(rising)
    assert s["first_mb"] == 100 and s["max_mb"] == 109 and s["growth_after_warmup_mb"] == 7


def test_audit_finds_lost_and_bad_outputs(soak, tmp_path):
    import hashlib
    import json

    (tmp_path / "a__v0.png").write_bytes(b"a")
    (tmp_path / "b__v0.png").write_bytes(b"b")
    rows = [{"output": "a__v0.png", "status": "ok", "output_sha256": hashlib.sha256(b"a").hexdigest()},
            {"output": "b__v0.png", "status": "ok", "output_sha256": "0" * 64}]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "errors.jsonl").write_text(json.dumps({"output": "c__v0.png", "error": "x"}) + "\n")
    (tmp_path / ".d.abc.tmp").write_bytes(b"")
    r = soak.audit(tmp_path, ["a__v0.png", "b__v0.png", "c__v0.png", "d__v0.png"])
    assert (r["complete"], r["reported_in_errors_jsonl"], r["lost"], r["bad_sha256"]) == (1, 1, 2, 1)
    assert r["lost_items"] == ["b__v0.png", "d__v0.png"] and r["temp_files"] == [".d.abc.tmp"]


@pytest.mark.slow
def test_dataset_soak_with_killed_workers(soak):
    r = soak.dataset_soak(images=12, kills=2, variants=2, time_limit=240)
    first, resume = r["first_run"], r["resume_run"]
    assert not first["hung"], "\n".join(first["stacks_tail"])  # where it was stuck
    assert not first["traceback"] and first["exit_code"] == 0, first["stderr_tail"]
    assert first["workers_killed"] >= 1
    # every item has its output + manifest row or an errors.jsonl row; nothing lost, no temp files
    assert r["after_first_run"]["lost"] == 0 and r["after_first_run"]["bad_sha256"] == 0
    assert r["after_first_run"]["reported_in_errors_jsonl"] >= 1
    assert r["after_first_run"]["complete"] + r["after_first_run"]["reported_in_errors_jsonl"] == r["items"]
    # --resume completes the rest
    assert not resume["hung"], "\n".join(resume["stacks_tail"])
    assert resume["exit_code"] == 0
    assert r["after_resume"] == {**r["after_resume"], "complete": r["items"], "lost": 0, "temp_files": []}
    assert r["after_resume"]["reported_in_errors_jsonl"] == 0
    # the driver's memory does not grow over the run (workers die and are replaced)
    driver = first["rss"]["driver"]
    assert driver["samples"] >= 2 and driver["max_mb"] - driver["first_mb"] < 100


@pytest.mark.slow
def test_web_soak_concurrent_clients_full_queue(soak):
    pytest.importorskip("gradio")
    pytest.importorskip("gradio_client")
    r = soak.web_soak(clients=3, requests=3, queue=1, time_limit=240, request_timeout=120)
    assert r["hung_clients"] == 0 and r["server_alive_after"]
    assert r["sent"] == 9 and r["not_sent_time_limit"] == 0
    # every request served or refused with the clear "queue is full" message; nothing else
    assert r["failed"] == 0, r["failures"]
    assert r["lost_outputs"] == 0 and r["unanswered"] == 0
    assert r["served"] + r["refused_clear"] == r["sent"]
    assert r["served"] >= 3
    rss = r["server_rss"]
    assert rss["samples"] >= 3
    # bounded: the VGG19 of the first stylize loads during the load; far below a leak per request
    assert rss["during_load"]["max_mb"] - rss["during_load"]["first_mb"] < 1500
