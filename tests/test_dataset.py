"""gafu dataset stylize end to end on a small tree built from ../shared/images (real models, small sizes)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gafu import dataset
from gafu.cli import main
from gafu.errors import GafuError
from gafu.jobs import read_rows

from conftest import manifest_keys, output_files

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "gafu" / "data"
STYLES = [str(DATA / "vangogh_starry_night.jpg"), str(DATA / "hokusai_great_wave.jpg")]
PX = 64  # --max-size of most runs: small, so the suite stays fast


@pytest.fixture(scope="module")
def tree(tmp_path_factory, shared_images) -> Path:
    """cat/ (2 photos + a corrupt png), rocket/, texture/ (greyscale), a text file, a licence."""
    root = tmp_path_factory.mktemp("dataset") / "in"
    files = {
        "cat/chelsea.png": "content/chelsea.png",
        "cat/coffee.png": "content/coffee.png",
        "rocket/rocket.jpg": "content/rocket.jpg",
        "texture/brick.png": "inspection/texture_brick_cc0.png",
    }
    for dst, src in files.items():
        (root / dst).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_images / src, root / dst)
    assert Image.open(root / "texture/brick.png").mode == "L"
    (root / "cat/broken.png").write_bytes((shared_images / "content/coffee.png").read_bytes()[:400])
    (root / "notes.txt").write_text("not an image\n")
    (root / "licence.txt").write_text("CC BY 4.0 (anomalib contributors); CC0\n")
    return root



@pytest.fixture(scope="module")
def reference(tree, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "out"
    report = dataset.stylize(tree, out, styles=STYLES, variants=2, max_size=PX, seed=5)
    assert report.run.done == 8 and report.run.failed == 2
    return out


def test_tree_is_mirrored_with_sizes_modes_and_rows(tree, reference):
    names = sorted(output_files(reference))
    assert names == [f"{stem}__v{k}.png" for stem in ("cat/chelsea", "cat/coffee", "rocket/rocket", "texture/brick")
                     for k in (0, 1)]
    for name in names:
        src = next((tree / Path(name).parent).glob(Path(name).name.split("__v")[0] + ".*"))
        with Image.open(src) as a, Image.open(reference / name) as b:
            w, h = a.size
            scale = PX / max(w, h)
            assert b.size == (round(w * scale), round(h * scale))
            assert b.format == "PNG"
            assert b.mode == ("L" if a.mode == "L" else "RGB")
    rows = read_rows(reference / "manifest.jsonl")
    assert len(rows) == 8 and len({r["output"] for r in rows}) == 8
    r = rows[0]
    for key in ("input", "input_sha256", "style_path", "style_sha256", "method", "settings", "seed", "device",
                "gafu_version", "seconds", "output_sha256", "status", "settings_hash"):
        assert r[key] is not None, key
    assert r["settings"]["weights"]["arbitrary_transform.onnx"].startswith("866c80c3")
    assert r["licence"].startswith("CC BY 4.0")
    assert {r["style_path"] for r in rows} <= set(STYLES)
    # style choice is seeded per item: both styles occur over 8 items, and it is recorded
    assert len({r["style_path"] for r in rows}) == 2
    errors = read_rows(reference / "errors.jsonl")
    assert [e["output"] for e in errors] == ["cat/broken__v0.png", "cat/broken__v1.png"]
    assert "cat/broken.png" in errors[0]["error"] and "\n" not in errors[0]["error"]


def test_same_bytes_on_rerun_and_with_two_workers(tree, reference, tmp_path):
    again = dataset.stylize(tree, tmp_path / "a", styles=STYLES, variants=2, max_size=PX, seed=5)
    assert again.run.done == 8
    assert output_files(tmp_path / "a") == output_files(reference)
    assert manifest_keys(tmp_path / "a") == manifest_keys(reference)
    two = dataset.stylize(tree, tmp_path / "b", styles=STYLES, variants=2, max_size=PX, seed=5, workers=2)
    assert two.run.workers == 2 and two.run.done == 8
    assert output_files(tmp_path / "b") == output_files(reference)
    # another run seed: other item seeds, hence (in fast mode with style images) other style choices
    other = dataset.stylize(tree, tmp_path / "c", styles=STYLES, variants=2, max_size=PX, seed=6, dry_run=True)
    ref_rows = {r["output"]: r for r in read_rows(reference / "manifest.jsonl")}
    assert all(it.seed != ref_rows[it.output]["seed"] for it in other.plan.items if it.output in ref_rows)
    assert [it.style for it in other.plan.items if it.output in ref_rows] != [r["style"] for r in ref_rows.values()]


def test_one_file_can_be_regenerated_alone(tree, reference, tmp_path):
    """A tree holding only one of the inputs gives that input's outputs byte for byte."""
    single = tmp_path / "in"
    (single / "rocket").mkdir(parents=True)
    shutil.copy(tree / "rocket/rocket.jpg", single / "rocket/rocket.jpg")
    dataset.stylize(single, tmp_path / "out", styles=STYLES, variants=2, max_size=PX, seed=5)
    got = output_files(tmp_path / "out")
    assert got == {k: v for k, v in output_files(reference).items() if k.startswith("rocket/")}


def test_own_size_by_default(tree, tmp_path):
    report = dataset.stylize(tree, tmp_path / "o", builtin="3,7", limit=3)  # broken, chelsea, coffee
    assert report.run.done == 2
    for row in read_rows(tmp_path / "o" / "manifest.jsonl"):
        with Image.open(tree / row["input"]) as a, Image.open(tmp_path / "o" / row["output"]) as b:
            assert a.size == b.size == (row["width"], row["height"])
        assert row["style"] in ("builtin:3", "builtin:7") and row["style_path"] is None


def test_random_style(tree, tmp_path):
    kw = dict(random_style=True, variants=2, max_size=PX, seed=1, limit=6)  # broken x2, chelsea x2, coffee x2
    dataset.stylize(tree, tmp_path / "r1", **kw)
    dataset.stylize(tree, tmp_path / "r2", **kw)
    a, b = output_files(tmp_path / "r1"), output_files(tmp_path / "r2")
    assert a == b and len(a) == 4
    assert a["cat/chelsea__v0.png"] != a["cat/chelsea__v1.png"]
    rows = read_rows(tmp_path / "r1" / "manifest.jsonl")
    assert len(rows) == 4
    assert all(r["style"] == "random" and isinstance(r["style_seed"], int) for r in rows)
    assert len({r["style_seed"] for r in rows}) == 4
    assert [f["path"] for f in rows[0]["settings"]["styles"]["random"]["fit_on"]][0] == "vangogh_starry_night.jpg"


def test_style_distribution_fit():
    class Encoder:  # vectors are the mean of each view's pixels, repeated: an analytic check
        def style_vector(self, im):
            return np.full((1, 1, 1, 100), np.asarray(im, dtype=np.float64).mean())

    paths = [DATA / "vangogh_starry_night.jpg", DATA / "kandinsky_composition_vii.jpg"]
    dist = dataset.fit_style_distribution(Encoder(), paths)
    from gafu.image import load

    views = [np.asarray(v, dtype=np.float64).mean() for p in paths for v in dataset.style_views(load(p))]
    assert dist.samples == 12
    np.testing.assert_allclose(dist.mean, np.mean(views))
    cov = dist.factor @ dist.factor.T
    assert cov[0, 0] == pytest.approx(np.var(views, ddof=1))
    assert cov[0, 1] == pytest.approx(0.9 * np.var(views, ddof=1))  # shrunk off-diagonal
    s = dist.sample(3)
    assert s.shape == (1, 1, 1, 100) and np.array_equal(s, dist.sample(3)) and not np.array_equal(s, dist.sample(4))


def test_resume_after_kill_9(tree, reference, tmp_path):
    """SIGKILL the running CLI at several moments; --resume ends with the uninterrupted run's files and rows."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "gafu", "dataset", "stylize", str(tree), "-o", str(out), "--styles", *STYLES,
           "--variants", "2", "--max-size", str(PX), "--seed", "5"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    manifest = out / "manifest.jsonl"
    for k, extra in enumerate(([], ["--resume"])):
        proc = subprocess.Popen(cmd + extra, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        before = manifest.read_bytes().count(b"\n") if manifest.exists() else 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if manifest.exists() and manifest.read_bytes().count(b"\n") > before + k:
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05 * k)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
    done = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert output_files(out) == output_files(reference)
    assert manifest_keys(out) == manifest_keys(reference)  # one row per output: no duplicates, none lost
    assert not [p for p in out.rglob("*.tmp")]
    assert [e["output"] for e in read_rows(out / "errors.jsonl")] == ["cat/broken__v0.png", "cat/broken__v1.png"]


def test_optimize_method_end_to_end(tree, tmp_path):
    # One torch thread in both runs: oneDNN's reductions (AMX machines) depend on the thread count,
    # so bytes are the same for the same threads per worker, not across thread counts.
    kw = dict(styles=STYLES[:1], method="optimize", steps=2, size=48, limit=2, threads=1)  # broken, chelsea
    report = dataset.stylize(tree, tmp_path / "opt", **kw)
    assert report.run.done == 1
    dataset.stylize(tree, tmp_path / "opt2", workers=2, **kw)  # in a worker process
    assert output_files(tmp_path / "opt") == output_files(tmp_path / "opt2")
    row = read_rows(tmp_path / "opt" / "manifest.jsonl")[0]
    assert row["method"] == "optimize" and row["steps"] == 2
    assert row["settings"]["weights"]
    with Image.open(tmp_path / "opt" / row["output"]) as im:
        assert max(im.size) == 48


def test_cli_run_json_and_dry_run(tree, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["dataset", "stylize", str(tree), "-o", str(out), "--builtin", "5", "--max-size", "32",
                 "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "cat/chelsea.png -> cat/chelsea__v0.png" in text and "notes.txt" in text
    assert not out.exists()  # a dry run writes nothing
    assert main(["dataset", "stylize", str(tree), "-o", str(out), "--builtin", "5", "--max-size", "32",
                 "--limit", "3", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["run"]["done"] == 2 and summary["run"]["failed"] == 1
    assert summary["plan"]["skipped"] == ["notes.txt"] and summary["plan"]["licence"] == "licence.txt"
    assert summary["run"]["errors"][0]["input"] == "cat/broken.png"
    # --resume after --limit 3: the first three are kept (broken retried), the rest written
    assert main(["dataset", "stylize", str(tree), "-o", str(out), "--builtin", "5", "--max-size", "32",
                 "--resume", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["run"]["kept"], summary["run"]["done"], summary["run"]["failed"]) == (2, 2, 1)
    # --on-error stop: exit 1 at the corrupt file
    assert main(["dataset", "stylize", str(tree), "-o", str(tmp_path / "stop"), "--builtin", "5",
                 "--max-size", "32", "--on-error", "stop"]) == 1


@pytest.mark.parametrize("argv, message", [
    (["--styles", "nope.jpg"], "style image not found"),
    ([], "give styles"),
    (["--builtin", "all", "--random-style"], "builtin styles go alone"),
    (["--builtin", "26"], "0-25"),
    (["--random-style", "--method", "optimize"], "needs style images"),
    (["--builtin", "1", "--steps", "3"], "--steps is for --method optimize"),
    (["--builtin", "1", "--ray-address", "auto"], "--backend ray"),
    (["--builtin", "1", "--strength", "2"], "strength"),
])
def test_cli_user_errors_exit_2(tree, tmp_path, capsys, argv, message):
    out = tmp_path / "o"
    assert main(["dataset", "stylize", str(tree), "-o", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_cli_refuses_bad_folders(tree, tmp_path, capsys):
    assert main(["dataset", "stylize", str(tmp_path / "missing"), "-o", str(tmp_path / "o"), "--builtin", "1"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["dataset", "stylize", str(tree), "-o", str(tree / "sub"), "--builtin", "1"]) == 2
    assert "inside the input" in capsys.readouterr().err
    out = tmp_path / "o"
    assert main(["dataset", "stylize", str(tree), "-o", str(out), "--builtin", "1", "--max-size", "32", "--limit", "1"]) == 0
    capsys.readouterr()
    assert main(["dataset", "stylize", str(tree), "-o", str(out), "--builtin", "1", "--max-size", "32"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["dataset", "stylize", str(tree), "-o", str(out), "--builtin", "1", "--max-size", "32",
                 "--limit", "1", "--overwrite"]) == 0
    assert main(["dataset"]) == 2


def test_api_errors():
    with pytest.raises(GafuError, match="method"):
        dataset.stylize("x", "y", builtin=1, method="paint")
    with pytest.raises(GafuError, match="workers"):
        dataset.stylize("x", "y", builtin=1, workers=0)
    with pytest.raises(GafuError, match="one of them"):
        dataset.stylize("x", "y", builtin=1, size=64, max_size=64)


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             logging_level="warning")
    yield ray
    ray.shutdown()


def test_ray_backend_same_files_and_resume(tree, reference, tmp_path, ray_cluster, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative folders: the actors run elsewhere, they get absolute paths
    shutil.copytree(tree, tmp_path / "in")
    out = tmp_path / "ray"
    report = dataset.stylize("in", "ray", styles=STYLES, variants=2, max_size=PX, seed=5, backend="ray", workers=2)
    assert report.run.backend == "ray" and report.run.done == 8 and report.run.failed == 2
    assert output_files(out) == output_files(reference)
    assert manifest_keys(out) == manifest_keys(reference)
    assert {r["device"] for r in read_rows(out / "manifest.jsonl")} == {"CPUExecutionProvider"}
    (out / "rocket/rocket__v1.png").unlink()
    again = dataset.stylize("in", "ray", styles=STYLES, variants=2, max_size=PX, seed=5, backend="ray", workers=2,
                            resume=True)
    assert (again.run.kept, again.run.done) == (7, 1)
    assert output_files(out) == output_files(reference)


def test_missing_cuda_is_an_error_before_any_item(tree, tmp_path, capsys):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    assert main(["dataset", "stylize", str(tree), "-o", str(tmp_path / "o"), "--builtin", "1", "--device", "cuda"]) == 2
    assert "cuda" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_optimize_worker_prepares_a_style_once(tree, tmp_path):
    plan, factory = dataset.prepare(tree, tmp_path / "o", styles=STYLES[:1], method="optimize", steps=1, size=48)
    worker = factory()
    items = [it for it in plan.items if it.input in ("cat/chelsea.png", "cat/coffee.png")]
    rows = [worker(it) for it in items]
    assert len(rows) == 2 and all(r["steps"] == 1 for r in rows)
    (targets,) = [v for k, v in worker._stylizers.items() if k.startswith("optimize:")]
    assert targets.extractor_calls == 1  # the painting went through VGG19 once for both photos
