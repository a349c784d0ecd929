"""Soak test: gafu web under concurrent clients, gafu dataset under killed workers (loopback only).

    PYTHONPATH=. flock /tmp/gafu-cpu.lock python benchmarks/soak.py [--out benchmarks/results/soak.json]
        [--clients 8 --requests 12 --queue 4] [--images 48 --kills 3]

Web: starts ``gafu web --host 127.0.0.1 --concurrency 1 --queue Q`` as its own process, then N
gradio_client clients (threads) each send a bounded number of requests (``fast`` at 256 px, every
fifth a tiny 64 px / 3 step ``stylize``). Each request is counted as served (output file checked),
refused with a clear message ("queue is full") or failed. The server's RSS is sampled every second.

Dataset: builds a tree of small crops of /work/shared/images, runs
``gafu dataset stylize --method fast --workers 2 --max-size 128`` and ``kill -9``s a worker process
K times during the run; then checks every planned item has its output and manifest row, or an
errors.jsonl row (lost = neither), and that ``--resume`` completes the rest. RSS of the driver and
of its workers is sampled every second.

Both loops are bounded in count and in time and stop by themselves. Prints JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from machine import cpu_model  # benchmarks/machine.py (the script's own folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT.parent / "shared" / "images"
DATA = ROOT / "gafu" / "data"
PHOTO = DATA / "chelsea.jpg"
STARRY = "Van Gogh, The Starry Night"
REFUSED_RE = re.compile(r"(?i)queue is full")
TEMP_RE = re.compile(r"^\..*\.tmp$")


# ---------------------------------------------------------------------------------------------
# helpers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float | None:
    """Resident memory of one process in MB (VmRSS from /proc), None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc/PID/task/*/children)."""
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                out += [int(x) for x in (task / "children").read_text().split()]
            except OSError:
                pass
    except OSError:
        pass
    return sorted(set(out))


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def worker_pids(pid: int) -> list[int]:
    """The pool's worker processes: spawned children, not multiprocessing's resource tracker."""
    return [c for c in children(pid) if "spawn_main" in cmdline(c) and "resource_tracker" not in cmdline(c)]


class RssSampler(threading.Thread):
    """Samples the RSS of ``pid`` every ``interval`` s; with ``with_children`` also the total of its
    pool workers (recorded only once a worker exists, so start-up is not a 'growth')."""

    def __init__(self, pid: int, interval: float = 1.0, with_children: bool = False):
        super().__init__(daemon=True)
        self.pid, self.interval, self.with_children = pid, interval, with_children
        self.samples: list[tuple[float, float]] = []
        self.worker_samples: list[tuple[float, float]] = []
        self._halt = threading.Event()
        self.t0 = time.monotonic()

    def sample(self) -> None:
        own = rss_mb(self.pid)
        if own is None:
            return
        t = round(time.monotonic() - self.t0, 2)
        if self.with_children:
            pids = worker_pids(self.pid)
            if not pids and not self.worker_samples:
                return
            if pids:
                self.worker_samples.append((t, round(sum(rss_mb(c) or 0.0 for c in pids), 1)))
        self.samples.append((t, round(own, 1)))

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def stop(self) -> dict:
        self._halt.set()
        self.join(timeout=5)
        if self.with_children:
            return {"driver": rss_summary(self.samples), "workers_total": rss_summary(self.worker_samples)}
        return rss_summary(self.samples)


def slope_mb_per_min(samples: list[tuple[float, float]]) -> float | None:
    if len(samples) < 3:
        return None
    ts = [t for t, _ in samples]
    ys = [y for _, y in samples]
    mt, my = sum(ts) / len(ts), sum(ys) / len(ys)
    var = sum((t - mt) ** 2 for t in ts)
    if var == 0:
        return None
    return round(60 * sum((t - mt) * (y - my) for t, y in samples) / var, 3)


def rss_summary(samples: list[tuple[float, float]]) -> dict:
    """first/last/max RSS and slopes; 'after warm-up' = the samples after the first quarter."""
    if not samples:
        return {"samples": 0}
    ys = [y for _, y in samples]
    warm = samples[len(samples) // 4:]
    return {
        "samples": len(samples),
        "first_mb": ys[0], "last_mb": ys[-1], "max_mb": max(ys), "min_mb": min(ys),
        "warm_first_mb": warm[0][1], "warm_max_mb": max(y for _, y in warm),
        "growth_after_warmup_mb": round(warm[-1][1] - warm[0][1], 1),
        "slope_mb_per_min": slope_mb_per_min(samples),
        "slope_after_warmup_mb_per_min": slope_mb_per_min(warm),
        "series": samples if len(samples) <= 400 else samples[:: len(samples) // 400 + 1],
    }


def child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["GRADIO_ANALYTICS_ENABLED"] = "False"
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


# ---------------------------------------------------------------------------------------------
# web soak
def wait_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"gafu web exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"gafu web did not answer on {url} within {timeout:.0f} s")


def _local(x) -> str:
    return x["path"] if isinstance(x, dict) else str(x)


def web_soak(clients: int = 8, requests: int = 12, queue: int = 4, concurrency: int = 1, fast_size: int = 256,
             stylize_every: int = 5, time_limit: float = 600.0, request_timeout: float = 180.0,
             interval: float = 1.0) -> dict:
    """Run the web soak; returns the figures (see the module docstring)."""
    from gradio_client import Client, handle_file
    from PIL import Image

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    workdir = Path(tempfile.mkdtemp(prefix="gafu-soak-web-"))
    log = open(workdir / "server.log", "w+b")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gafu", "web", "--host", "127.0.0.1", "--port", str(port),
         "--concurrency", str(concurrency), "--queue", str(queue)],
        stdout=log, stderr=subprocess.STDOUT, env=child_env(), cwd=str(workdir))
    sampler = RssSampler(proc.pid, interval)
    lock = threading.Lock()
    counts = {"sent": 0, "served": 0, "refused_clear": 0, "failed": 0, "lost_outputs": 0,
              "fast_served": 0, "stylize_served": 0, "not_sent_time_limit": 0}
    failures: list[str] = []
    latencies: list[float] = []
    t_start = time.monotonic()
    deadline = t_start + time_limit

    def bump(key: str, n: int = 1) -> None:
        with lock:
            counts[key] += n

    def one(c, kind: str) -> None:
        t0 = time.monotonic()
        try:
            if kind == "fast":
                out = c.predict(handle_file(str(PHOTO)), None, STARRY, "none", 1.0, False, False, fast_size,
                                api_name="/fast")
                png = Path(_local(out[1]))
                ok = png.is_file()
                if ok:
                    with Image.open(png) as im:
                        ok = max(im.size) == fast_size
            else:
                job = c.submit(handle_file(str(PHOTO)), [], [STARRY], "seed", 64, 3, 0.5, "", "none", 1.0,
                               None, None, 3, api_name="/stylize")
                job.result(timeout=request_timeout)
                last = job.outputs()[-1]
                ok = "done: 3 steps" in str(last[2]) and Path(_local(last[4])).is_file()
        except Exception as exc:  # noqa: BLE001 - every outcome is counted
            msg = " ".join(str(exc).split())[:200] or type(exc).__name__
            if REFUSED_RE.search(msg):
                bump("refused_clear")
                time.sleep(0.5)  # a visitor told "queue is full" tries again a little later
            else:
                bump("failed")
                with lock:
                    failures.append(f"{kind}: {type(exc).__name__}: {msg}")
            return
        with lock:
            latencies.append(time.monotonic() - t0)
        if ok:
            bump("served")
            bump(f"{kind}_served")
        else:
            bump("lost_outputs")

    def visitor(k: int) -> None:
        try:
            c = Client(url, verbose=False, download_files=False)
        except Exception as exc:  # noqa: BLE001
            bump("failed", requests)
            with lock:
                failures.append(f"client {k} could not connect: {exc}")
            return
        for i in range(requests):
            if time.monotonic() > deadline:
                bump("not_sent_time_limit", requests - i)
                return
            bump("sent")
            one(c, "stylize" if stylize_every and (k * requests + i) % stylize_every == stylize_every - 1 else "fast")

    result: dict = {"clients": clients, "requests_per_client": requests, "concurrency": concurrency,
                    "queue": queue, "fast_size": fast_size, "stylize": "64 px, 3 steps, every %d-th" % stylize_every}
    try:
        sampler.start()
        wait_http(url, proc, timeout=180)
        result["server_start_s"] = round(time.monotonic() - t_start, 2)
        # warm-up (models load), not counted
        t0 = time.monotonic()
        warm = Client(url, verbose=False, download_files=False)
        warm.predict(handle_file(str(PHOTO)), None, STARRY, "none", 1.0, False, False, fast_size, api_name="/fast")
        result["warmup_fast_s"] = round(time.monotonic() - t0, 2)
        t0 = time.monotonic()  # and the optimizer's VGG19, so the load phase starts with every model loaded
        warm.submit(handle_file(str(PHOTO)), [], [STARRY], "seed", 64, 1, 0.5, "", "none", 1.0, None, None, 1,
                    api_name="/stylize").result(timeout=request_timeout)
        result["warmup_stylize_s"] = round(time.monotonic() - t0, 2)
        t0 = time.monotonic()
        load_t = t0 - sampler.t0
        threads = [threading.Thread(target=visitor, args=(k,), daemon=True) for k in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=max(1.0, deadline - time.monotonic() + request_timeout))
        result["hung_clients"] = sum(t.is_alive() for t in threads)
        result["load_seconds"] = round(time.monotonic() - t0, 2)
        result["server_alive_after"] = proc.poll() is None
    finally:
        rss = sampler.stop()
        if "load_seconds" in result:
            during = [x for x in sampler.samples if x[0] >= load_t]
            half = during[len(during) // 2:]
            rss["during_load"] = {k: v for k, v in rss_summary(during).items() if k != "series"}
            rss["during_load"]["second_half_growth_mb"] = round(half[-1][1] - half[0][1], 1) if half else None
            rss["during_load"]["second_half_slope_mb_per_min"] = slope_mb_per_min(half)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.seek(0)
        tail = log.read().decode(errors="replace")[-2000:]
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)
    answered = counts["served"] + counts["refused_clear"] + counts["lost_outputs"]
    lat = sorted(latencies)
    result.update(counts)
    result.update({
        "answered_or_refused": answered,
        "unanswered": counts["sent"] - answered - counts["failed"],
        "failures": failures[:20],
        "latency_s": {"median": round(lat[len(lat) // 2], 3), "max": round(lat[-1], 3)} if lat else None,
        "server_exit_code": proc.returncode,
        "server_rss": rss,
    })
    if counts["failed"] or not result.get("server_alive_after", False):
        result["server_log_tail"] = tail
    return result


# ---------------------------------------------------------------------------------------------
# dataset soak
def build_tree(root: Path, n: int, seed: int = 0) -> list[str]:
    """``n`` small crops (96-200 px) of the shared images in three sub-folders; returns relative paths."""
    from PIL import Image

    sources = sorted(p for p in (IMAGES / "content").iterdir() if p.suffix.lower() in (".png", ".jpg"))
    sources += sorted(p for p in (IMAGES / "style").iterdir() if p.suffix.lower() in (".png", ".jpg"))
    if not sources:  # pragma: no cover - fall back on the bundled pictures
        sources = sorted(DATA.glob("*.jpg"))
    rng = random.Random(seed)
    opened = [Image.open(p).convert("RGB") for p in sources]
    rels = []
    for i in range(n):
        im = opened[i % len(opened)]
        w, h = rng.randint(96, 200), rng.randint(96, 200)
        x, y = rng.randint(0, max(0, im.width - w)), rng.randint(0, max(0, im.height - h))
        rel = f"{('cats', 'dogs', 'misc')[i % 3]}/img_{i:03d}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        im.crop((x, y, x + w, y + h)).save(root / rel)
        rels.append(rel)
    for im in opened:
        im.close()
    return rels


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            pass
    return rows


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def audit(out_dir: Path, outputs: list[str]) -> dict:
    """Every planned output: file with a matching manifest row, or an errors.jsonl row; else lost."""
    manifest = {r["output"]: r for r in read_jsonl(out_dir / "manifest.jsonl") if r.get("status") == "ok"}
    errors = {r["output"]: r for r in read_jsonl(out_dir / "errors.jsonl")}
    complete = reported = lost = bad_sha = 0
    lost_items = []
    for rel in outputs:
        row = manifest.get(rel)
        if row is not None and (out_dir / rel).is_file():
            if sha256(out_dir / rel) == row.get("output_sha256"):
                complete += 1
                continue
            bad_sha += 1
        if rel in errors:
            reported += 1
        else:
            lost += 1
            lost_items.append(rel)
    temps = [str(p.relative_to(out_dir)) for p in out_dir.rglob("*") if TEMP_RE.match(p.name)]
    return {"complete": complete, "reported_in_errors_jsonl": reported, "lost": lost, "lost_items": lost_items[:10],
            "bad_sha256": bad_sha, "error_reasons": sorted({r.get("error", "")[:90] for r in errors.values()}),
            "temp_files": temps}


def _stop_group(proc: subprocess.Popen, *, dump: bool) -> None:
    """End the run's whole process group (the driver and its pool workers). With ``dump``, first
    SIGABRT every member: faulthandler (PYTHONFAULTHANDLER=1) writes each one's Python stacks to the
    run's stderr log, so an overrun says where it was stuck."""
    try:
        if dump:
            os.killpg(proc.pid, signal.SIGABRT)
            time.sleep(2.0)
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:  # pragma: no cover - a zombie the kernel has not reaped yet
        pass


def run_dataset(args: list[str], *, kills: int = 0, kill_at: list[float] | None = None, total: int = 1,
                out_dir: Path, time_limit: float = 600.0, interval: float = 0.5) -> dict:
    """One ``gafu dataset stylize`` run; kill -9 a worker when the manifest reaches each fraction in kill_at.

    The run is its own process group writing to log files (never pipes: a worker that outlives a
    killed driver would hold a pipe open and block the reader for ever); past ``time_limit`` the
    whole group is ended, after a dump of every process's Python stacks (``hung`` and
    ``stacks_tail`` in the result)."""
    t0 = time.monotonic()
    logs = Path(tempfile.mkdtemp(prefix="gafu-soak-log-"))
    env = child_env()
    env["PYTHONFAULTHANDLER"] = "1"
    with open(logs / "stdout", "w+b") as out_log, open(logs / "stderr", "w+b") as err_log:
        proc = subprocess.Popen([sys.executable, "-m", "gafu", "dataset", "stylize", *args, "--json"],
                                stdout=out_log, stderr=err_log, env=env, start_new_session=True)
    sampler = RssSampler(proc.pid, interval, with_children=True)
    sampler.start()
    killed: list[dict] = []
    thresholds = list(kill_at or [])[:kills]
    hung = False
    end = t0 + time_limit
    while proc.poll() is None:
        if time.monotonic() > end:
            hung = True
            break
        if thresholds:
            done = len(read_jsonl(out_dir / "manifest.jsonl")) + len(read_jsonl(out_dir / "errors.jsonl"))
            if done >= thresholds[0] * total:
                pids = worker_pids(proc.pid)
                if pids:
                    victim = random.Random(len(killed)).choice(pids)
                    try:
                        os.kill(victim, signal.SIGKILL)
                        killed.append({"pid": victim, "rows_before": done, "t_s": round(time.monotonic() - t0, 2)})
                        thresholds.pop(0)
                    except ProcessLookupError:
                        pass
        time.sleep(0.1)
    rss = sampler.stop()
    # a hung run is dumped and ended; a finished one may still leave workers behind: end those too
    _stop_group(proc, dump=hung)
    stdout = (logs / "stdout").read_bytes().decode(errors="replace")
    stderr = (logs / "stderr").read_bytes().decode(errors="replace")
    shutil.rmtree(logs, ignore_errors=True)
    summary = None
    try:
        summary = json.loads(stdout)
    except ValueError:
        pass
    err_lines = [ln for ln in stderr.splitlines() if ln.strip() and "\r" not in ln]
    result = {
        "exit_code": proc.returncode, "hung": hung, "seconds": round(time.monotonic() - t0, 2),
        "workers_killed": len(killed), "kills": killed,
        "traceback": "Traceback (most recent call last)" in stderr,
        "summary": {k: summary.get(k) for k in ("planned", "done", "kept", "failed", "not_run", "images_per_s")}
        if isinstance(summary, dict) and "planned" in summary else (summary.get("run") if isinstance(summary, dict) else None),
        "stderr_tail": err_lines[-4:],
        "rss": rss,
    }
    if hung:
        result["stacks_tail"] = err_lines[-120:]
    return result


def dataset_soak(images: int = 48, kills: int = 3, workers: int = 2, max_size: int = 128, variants: int = 1,
                 time_limit: float = 600.0, builtin: str = "0,3,7") -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="gafu-soak-data-"))
    try:
        in_dir, out_dir = tmp / "in", tmp / "out"
        inputs = build_tree(in_dir, images)
        args = [str(in_dir), "-o", str(out_dir), "--builtin", builtin, "--method", "fast",
                "--workers", str(workers), "--max-size", str(max_size), "--variants", str(variants)]
        kill_at = [0.15 + 0.6 * i / max(1, kills - 1) for i in range(kills)] if kills else []
        outputs = [str(Path(rel).with_suffix("")) + f"__v{k}.png" for rel in inputs for k in range(variants)]
        total = len(outputs)
        first = run_dataset(args, kills=kills, kill_at=kill_at, total=total, out_dir=out_dir,
                            time_limit=time_limit)
        after_first = audit(out_dir, outputs)
        resume = run_dataset([*args, "--resume"], total=total, out_dir=out_dir, time_limit=time_limit)
        after_resume = audit(out_dir, outputs)
        return {"images": images, "variants": variants, "items": total, "workers": workers, "max_size": max_size, "builtin": builtin,
                "kill_at_fraction": [round(f, 3) for f in kill_at],
                "first_run": first, "after_first_run": after_first,
                "resume_run": resume, "after_resume": after_resume,
                "lost_outputs": after_first["lost"] + after_resume["lost"]}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="also write the JSON here")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=12, help="requests per client")
    ap.add_argument("--queue", type=int, default=4)
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--variants", type=int, default=4, help="outputs per image (a longer job)")
    ap.add_argument("--skip-web", action="store_true")
    ap.add_argument("--skip-dataset", action="store_true")
    a = ap.parse_args(argv)
    out = {"benchmark": "soak", "cpu_model": cpu_model(), "cpus": os.cpu_count(),
           "python": platform.python_version(), "load_avg_before": list(os.getloadavg()),
           "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        import gradio

        out["gradio"] = gradio.__version__
    except ImportError:
        pass
    if not a.skip_web:
        out["web"] = web_soak(clients=a.clients, requests=a.requests, queue=a.queue)
    if not a.skip_dataset:
        out["dataset"] = dataset_soak(images=a.images, kills=a.kills, variants=a.variants)
    out["load_avg_after"] = list(os.getloadavg())
    text = json.dumps(out, indent=2)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
