"""The seed preset against an independent TensorFlow run of the tutorial with the same weights.

Reference numbers and images were produced by ``benchmarks/tf_seed_reference.py`` (TensorFlow 2.21,
Keras 3.15, the bundled quantized VGG19), content ``chelsea.png`` from the shared images; see the
JSON files in tests/data.

Two kinds of reference:

- ``..._starrypng_...``: style given as a PNG (tests/data/starry_night_256.png), so TensorFlow and
  gafu start from identical pixels: this isolates the algorithm and is held to a tight tolerance.
- ``..._starry_...``: style given as the original JPEG. TensorFlow's ``decode_image`` uses libjpeg's
  fast integer IDCT, Pillow the accurate one (about 1 grey level apart on average), so the runs
  start from slightly different style pixels; the issue's bar (total loss within 3%) still holds.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gafu.config import get_preset
from gafu.optimize import StyleTransfer

DATA = Path(__file__).resolve().parent / "data"


def _reference(name):
    return json.loads((DATA / f"{name}.json").read_text())


def _run_like(ref, content, style):
    cfg = get_preset("seed").replace(size=ref["size"], steps=ref["steps"], tv_weight=ref["tv_weight"])
    st = StyleTransfer(content, [style], cfg)
    assert list(st.content.shape[-2:]) == ref["content_shape"][1:3]
    losses = [it.loss for it in st.run()]
    return st, losses


def _image_diff(st, ref):
    tf_img = np.asarray(Image.open(DATA / ref["saved_image"]).convert("RGB"), dtype=np.float64) / 255.0
    ours = st.image[0].permute(1, 2, 0).numpy()
    assert tf_img.shape == ours.shape
    return float(np.abs(tf_img - ours).mean())


# The TV-30 variant runs with the slow tests (CI runs them): the same code path plus one term.
@pytest.mark.parametrize("tv", [0, pytest.param(30, marks=pytest.mark.slow)])
def test_seed_preset_reproduces_tensorflow_run_on_identical_pixels(tv, shared_images):
    ref = _reference(f"tf_seed_reference_chelsea_starrypng_tv{tv}_128")
    st, losses = _run_like(ref, shared_images / "content" / "chelsea.png", DATA / "starry_night_256.png")
    tf_losses = ref["per_step"]["total"]
    assert len(tf_losses) == len(losses) == ref["steps"] == 100
    for i in range(10):  # the first steps agree to float32 round-off
        assert losses[i] == pytest.approx(tf_losses[i], rel=1e-3), f"step {i + 1}"
    for i in range(9, 100, 10):  # later the two float32 trajectories drift apart only slightly
        assert losses[i] == pytest.approx(tf_losses[i], rel=0.01), f"step {i + 1}"
    after = st.evaluate()
    for term in ("total", "style", "content"):
        assert after[term] == pytest.approx(ref["loss_after_last_step"][term], rel=0.02), term
    if tv:
        assert after["tv"] == pytest.approx(ref["loss_after_last_step"]["tv"], rel=0.02)
    assert _image_diff(st, ref) < 0.015  # a few grey levels on average


def test_seed_preset_within_3_percent_of_tensorflow_on_jpeg_style(shared_images):
    ref = _reference("tf_seed_reference_chelsea_starry_128")
    st, losses = _run_like(ref, shared_images / "content" / "chelsea.png", shared_images / "style" / ref["style"])
    assert losses[-1] == pytest.approx(ref["per_step"]["total"][-1], rel=0.03)
    assert st.evaluate()["total"] == pytest.approx(ref["loss_after_last_step"]["total"], rel=0.03)


@pytest.mark.slow
def test_seed_preset_matches_tensorflow_at_512(shared_images):
    ref = _reference("tf_seed_reference_chelsea_starry_512")
    st, _ = _run_like(ref, shared_images / "content" / "chelsea.png", shared_images / "style" / ref["style"])
    assert st.evaluate()["total"] == pytest.approx(ref["loss_after_last_step"]["total"], rel=0.03)
