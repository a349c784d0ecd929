"""gafu.assets: packaged files found without importing their package, sha256 once, mismatches refused."""

from __future__ import annotations

import hashlib
import importlib
import sys
import threading
import time

import pytest

from gafu import assets
from gafu.errors import GafuError

PAYLOAD = b"weights of a fake model\n" * 1000


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """A package 'gafu_fake_pkg' 1.2.3 on sys.path whose import would fail loudly."""
    root = tmp_path / "site"
    pkg = root / "gafu_fake_pkg"
    (pkg / "models").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('gafu_fake_pkg must not be imported')\n")
    (pkg / "models" / "net.bin").write_bytes(PAYLOAD)
    dist = root / "gafu_fake_pkg-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: gafu-fake-pkg\nVersion: 1.2.3\n")
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    yield pkg
    sys.modules.pop("gafu_fake_pkg", None)


def _locate(relpath="models/net.bin"):
    return assets.locate("gafu_fake_pkg", relpath, pin="gafu-fake-pkg==1.2.3", needed_for="the fake model")


def test_found_without_importing_the_package(fake_package):
    path = _locate()
    assert path == fake_package / "models" / "net.bin"
    assert "gafu_fake_pkg" not in sys.modules  # its __init__ would have raised
    assert assets.installed_version("gafu-fake-pkg") == "1.2.3"  # metadata, not an import


def test_sha256_is_right_and_computed_once(fake_package, monkeypatch):
    calls = []
    real = assets._digest_file
    monkeypatch.setattr(assets, "_digest_file", lambda p: calls.append(p) or real(p))
    path = _locate()
    expected = hashlib.sha256(PAYLOAD).hexdigest()
    assert assets.sha256_file(path) == expected
    assert assets.verify(path, expected) == path
    assert assets.sha256_file(str(path)) == expected
    assert len(calls) == 1


def test_tampered_file_is_refused_with_both_hashes(fake_package):
    path = _locate()
    expected = hashlib.sha256(PAYLOAD).hexdigest()
    assets.verify(path, expected)
    with open(path, "ab") as fh:  # changed after a successful check: size and mtime change
        fh.write(b"!")
    actual = hashlib.sha256(PAYLOAD + b"!").hexdigest()
    with pytest.raises(GafuError) as err:
        assets.verify(path, expected, what="fake model", pin="gafu-fake-pkg==1.2.3")
    msg = str(err.value)
    assert actual in msg and expected in msg and str(path) in msg
    assert "gafu-fake-pkg 1.2.3" in msg and "pip install --force-reinstall gafu-fake-pkg==1.2.3" in msg
    with pytest.raises(GafuError, match=actual):
        assets.read_verified(path, expected)
    assert assets.read_verified(path, actual) == PAYLOAD + b"!"


def test_missing_package_names_the_pip_line(tmp_path):
    with pytest.raises(GafuError) as err:
        assets.locate("gafu_no_such_pkg", "x.bin", pin="gafu-no-such-pkg==9.9", needed_for="the thing",
                      alternative="set GAFU_THING to a file")
    msg = str(err.value)
    assert "the thing needs the 'gafu-no-such-pkg' package" in msg
    assert "pip install gafu-no-such-pkg==9.9" in msg and "GAFU_THING" in msg


def test_missing_file_in_installed_package(fake_package):
    with pytest.raises(GafuError) as err:
        _locate("models/other.bin")
    assert "gafu-fake-pkg 1.2.3 has no models/other.bin" in str(err.value)
    assert "pip install --force-reinstall gafu-fake-pkg==1.2.3" in str(err.value)
    assert "gafu_fake_pkg" not in sys.modules


def test_dotted_names_are_refused():
    with pytest.raises(ValueError, match="top-level"):
        assets.package_dir("os.path", pin="x==1", needed_for="x")


def _at_once(n, fn):
    """Call fn from n threads released together; return their results."""
    barrier = threading.Barrier(n)
    results = [None] * n

    def work(i):
        barrier.wait()
        results[i] = fn()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_threads_asking_at_once_hash_once(fake_package, monkeypatch):
    calls = []
    real = assets._digest_file

    def slow(p):
        calls.append(p)
        time.sleep(0.2)  # long enough for every thread to arrive while the first one hashes
        return real(p)

    monkeypatch.setattr(assets, "_digest_file", slow)
    path = _locate()
    results = _at_once(8, lambda: assets.sha256_file(path))
    assert len(calls) == 1
    assert results == [hashlib.sha256(PAYLOAD).hexdigest()] * 8


def test_once_cache_loads_once_and_retries_after_a_failure():
    cache = assets.OnceCache()
    calls = []

    def make():
        calls.append(1)
        time.sleep(0.2)
        return object()

    results = _at_once(8, lambda: cache.get("model", make))
    assert len(calls) == 1 and all(r is results[0] for r in results)
    assert "model" in cache and len(cache) == 1

    def broken():
        raise OSError("disk")

    with pytest.raises(OSError):
        cache.get("other", broken)
    assert "other" not in cache
    assert cache.get("other", lambda: 5) == 5  # a failure cached nothing


# --- the model caches built on it ------------------------------------------------------------


def _slow_counter(calls, value_fn):
    def slow(*args, **kwargs):
        calls.append(args)
        time.sleep(0.2)
        return value_fn()
    return slow


def test_vgg19_weights_load_once_under_threads(tmp_path, monkeypatch):
    from gafu import weights

    path = tmp_path / "vgg.pth"
    path.write_bytes(b"stand-in: the loader is replaced")
    calls = []
    monkeypatch.setattr(weights, "_load_uncached", _slow_counter(calls, lambda: {"loaded": True}))
    results = _at_once(8, lambda: weights.load_vgg19_weights(path))
    assert len(calls) == 1 and all(r is results[0] for r in results)


def test_efficientnet_loads_once_under_threads(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from gafu import classify

    path = tmp_path / "effnet.pth"
    path.write_bytes(b"stand-in")
    calls = []
    monkeypatch.setattr(classify, "effnet_weights_path", lambda: path)
    monkeypatch.setattr(classify, "_effnet_cache", assets.OnceCache())
    monkeypatch.setattr(classify, "_load_effnet", _slow_counter(calls, object))
    results = _at_once(8, lambda: classify.load_efficientnet_lite0())
    assert len(calls) == 1 and all(r is results[0] for r in results)


def test_fast_sessions_build_once_under_threads(monkeypatch):
    pytest.importorskip("onnxruntime")
    from gafu import fast
    from gafu.fast import runtime

    try:
        fast.model_dir()
    except GafuError as exc:
        pytest.skip(f"Magenta model files not available: {exc}")
    calls = []
    real = runtime._build

    def slow(*args):
        calls.append(args[0])
        time.sleep(0.2)
        return real(*args)

    monkeypatch.setattr(runtime, "_SESSIONS", assets.OnceCache())
    monkeypatch.setattr(runtime, "_build", slow)
    results = _at_once(6, lambda: fast.session("arbitrary_predict"))
    assert calls == ["arbitrary_predict"] and all(r is results[0] for r in results)
    assert fast.session("arbitrary_predict") is results[0]
