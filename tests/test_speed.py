"""The speed paths (gafu.speed, gafu.lbfgs, reduced-precision VGG19, coarse-to-fine, early stop).

The seed preset must stay the fidelity reference: its per-step losses are checked against an
independent re-implementation of the tutorial written here with plain torch ops, and against the
pre-speed run loop replayed step by step (bit for bit).
"""

import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from gafu.config import StyleConfig, get_preset
from gafu.errors import GafuError
from gafu.lbfgs import LBFGS
from gafu.losses import gram_matrix
from gafu.optimize import StyleTransfer
from gafu.speed import _GramT, gram_lowp, keep_freed_memory
from gafu.vgg import VGG19Features
from gafu.weights import load_vgg19_weights

STYLE = ["block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1"]
ORDER = ["block1_conv1", "block1_conv2", "P", "block2_conv1", "block2_conv2", "P",
         "block3_conv1", "block3_conv2", "block3_conv3", "block3_conv4", "P",
         "block4_conv1", "block4_conv2", "block4_conv3", "block4_conv4", "P",
         "block5_conv1", "block5_conv2"]


@pytest.fixture(scope="module")
def weights():
    return load_vgg19_weights()


# ----------------------------------------------------------------------------------------------
# The seed preset is unchanged


def _reference_seed_losses(content, style, weights, steps, tv_weight):
    """The TF tutorial's loop, written out with F.conv2d, einsum and Keras' Adam formula."""

    def feats(x):
        bgr = torch.stack([x[:, 2] * 255 - 103.939, x[:, 1] * 255 - 116.779, x[:, 0] * 255 - 123.68], 1)
        h, out = bgr, {}
        for n in ORDER:
            if n == "P":
                h = F.max_pool2d(h, 2)
                continue
            h = torch.relu(F.conv2d(h, *weights[n], padding=1))
            out[n] = h
        return out

    def gram(f):
        return torch.einsum("bchw,bdhw->bcd", f, f) / (f.shape[2] * f.shape[3])

    with torch.no_grad():
        ct = feats(content)["block5_conv2"]
        sf = feats(style)
        sg = {k: gram(sf[k]) for k in STYLE}
    x = content.clone().requires_grad_(True)
    m = torch.zeros_like(x)
    v = torch.zeros_like(x)
    losses = []
    for t in range(1, steps + 1):
        f = feats(x)
        loss = sum(((gram(f[k]) - sg[k]) ** 2).mean() for k in STYLE) * (1e-2 / 5)
        loss = loss + ((f["block5_conv2"] - ct) ** 2).mean() * 1e4
        tv = (x[:, :, 1:] - x[:, :, :-1]).abs().sum() + (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().sum()
        loss = loss + tv_weight * tv
        (g,) = torch.autograd.grad(loss, x)
        losses.append(float(loss.detach()))
        with torch.no_grad():
            m += 0.01 * (g - m)
            v += 0.001 * (g * g - v)
            alpha = 0.02 * math.sqrt(1 - 0.999**t) / (1 - 0.99**t)
            x -= alpha * m / (v.sqrt() + 0.1)
            x.clamp_(0, 1)
    return losses


@pytest.mark.parametrize("tv_weight", [0.0, 30.0])
def test_seed_preset_matches_independent_reference(content_path, style_path, weights, tv_weight):
    cfg = get_preset("seed").replace(size=48, steps=8, tv_weight=tv_weight)
    st = StyleTransfer(content_path, [style_path], cfg)
    got = [it.loss for it in st.run()]
    ref = _reference_seed_losses(st.content, st.styles[0], weights, 8, tv_weight)
    for a, b in zip(got, ref):
        assert abs(a - b) <= 2e-4 * b
    assert got[-1] < 0.5 * got[0]


def test_seed_run_is_the_pre_speed_loop_bit_for_bit(content_path, style_path):
    """run() with the seed preset = the original loop (loss_terms, backward, KerasAdam, clamp)."""
    cfg = get_preset("seed").replace(size=40, steps=5)
    a = StyleTransfer(content_path, [style_path], cfg)
    b = StyleTransfer(content_path, [style_path], cfg)
    got = [it.loss for it in a.run()]
    x = b._image
    want = []
    for _ in range(5):
        b.optimizer.zero_grad(set_to_none=True)
        terms = b.loss_terms(x)
        terms["total"].backward()
        b.optimizer.step()
        with torch.no_grad():
            x.clamp_(0.0, 1.0)
        want.append(float(terms["total"].detach()))
    assert got == want
    assert torch.equal(a.image, b.image)
    assert a.fp32_fallback_steps == 0


def test_seed_preset_settings_are_the_tutorial():
    seed = get_preset("seed")
    assert seed == StyleConfig()
    assert (seed.precision, seed.optimizer, seed.scales, seed.stop_tol) == ("fp32", "adam", (), 0.0)
    assert (seed.steps, seed.lr, seed.beta1, seed.eps, seed.resize) == (1000, 0.02, 0.99, 0.1, "seed")


def test_the_default_goes_on_in_fp32_when_its_16bit_loss_stalls():
    fast = get_preset("fast")
    assert (fast.on_stall, fast.stop_tol, fast.steps) == ("fp32", 1e-3, 1000)
    assert get_preset("seed").on_stall == "stop"  # the seed never stops early anyway (stop_tol 0)


# ----------------------------------------------------------------------------------------------
# Reduced-precision extractor


def test_fold_of_caffe_preprocessing_is_exact_including_borders(weights):
    layers = ["conv1_1", "relu2_1", "relu5_2"]
    m = VGG19Features(layers, weights=weights)
    folded = m.reduced_precision(torch.float32, channels_last=False)
    assert folded.folded and not m.folded  # the original is untouched
    x = torch.rand(1, 3, 37, 29)
    a, b = m(x), folded(x)
    for k in layers:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-4 * float(a[k].abs().max()))
    # the border row/column (where zero padding happens) agrees as well as the interior
    border = (b["conv1_1"] - a["conv1_1"])[..., 0, :].abs().max()
    assert border <= 1e-4 * float(a["conv1_1"].abs().max())


def test_bf16_channels_last_extractor_close_to_fp32(weights):
    layers = STYLE + ["block5_conv2"]
    m = VGG19Features(layers, weights=weights)
    low = m.reduced_precision(torch.bfloat16)
    x = torch.rand(1, 3, 40, 56)
    a, b = m(x), low(x)
    for k in layers:
        assert b[k].dtype == torch.bfloat16
        assert b[k].is_contiguous(memory_format=torch.channels_last)
        rel = float((b[k].float() - a[k]).norm() / a[k].norm())
        assert rel < 0.03, (k, rel)
    assert m.convs["conv1_1"].weight.dtype == torch.float32  # original not converted


def test_load_vgg19_caches_reduced_copy():
    from gafu.vgg import load_vgg19

    a = load_vgg19(["relu1_1"], dtype=torch.bfloat16)
    assert a is load_vgg19(["relu1_1"], dtype=torch.bfloat16)
    assert load_vgg19(["relu1_1"]) is not a
    assert load_vgg19(["relu1_1"], dtype=torch.float32) is load_vgg19(["relu1_1"])


# ----------------------------------------------------------------------------------------------
# Gram matrix of 16-bit features


def test_gram_function_gradcheck_float64():
    x = torch.randn(2, 7, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_GramT.apply, (x,))
    torch.testing.assert_close(_GramT.apply(x), x.transpose(1, 2) @ x)


@pytest.mark.parametrize("channels_last", [True, False])
def test_gram_lowp_matches_fp32_value_and_gradient(channels_last):
    f32 = torch.relu(torch.randn(1, 16, 12, 10)) * 50
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    f16 = f32.to(torch.bfloat16).contiguous(memory_format=fmt).requires_grad_(True)
    exact = f16.detach().float().requires_grad_(True)  # same (bf16-representable) values in fp32
    g_low = gram_lowp(f16)
    g_ref = gram_matrix(exact)
    assert g_low.dtype == torch.float32 and g_low.shape == (1, 16, 16)
    torch.testing.assert_close(g_low, g_ref, rtol=2**-8, atol=1e-3)
    w = torch.randn(1, 16, 16)
    (g_low * w).sum().backward()
    (g_ref * w).sum().backward()
    rel = float((f16.grad.float() - exact.grad).norm() / exact.grad.norm())
    assert rel < 1e-2
    if channels_last:
        assert f16.grad.is_contiguous(memory_format=torch.channels_last)


def test_gram_matrix_dispatches_16_bit_inputs():
    f = torch.rand(1, 4, 6, 5)
    for dt in (torch.bfloat16, torch.float16):
        g = gram_matrix(f.to(dt))
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, gram_matrix(f.to(dt).float()), rtol=1e-2, atol=1e-3)
    mask = torch.rand(1, 1, 6, 5)
    gm = gram_matrix(f.to(torch.bfloat16), mask)
    assert gm.dtype == torch.float32
    torch.testing.assert_close(gm, gram_matrix(f.to(torch.bfloat16).float(), mask))
    assert gram_matrix(f).dtype == torch.float32


# ----------------------------------------------------------------------------------------------
# Quality guard: reduced precision vs fp32 at equal steps


def test_bf16_path_final_loss_within_2_percent_of_fp32(content_path, style_path):
    # Precision, not decoding, is under test: the accurate decoder's pixels, as when this guard was set.
    cfg = get_preset("seed").replace(size=64, steps=30, jpeg_decoder="pillow")
    a = StyleTransfer(content_path, [style_path], cfg)
    b = StyleTransfer(content_path, [style_path], cfg.replace(precision="bf16"))
    list(a.run())
    its = list(b.run())
    la, lb = a.evaluate()["total"], b.evaluate()["total"]  # both evaluated in fp32
    assert abs(lb - la) <= 0.02 * la
    assert b.fp32_fallback_steps == 0
    assert abs(its[-1].loss - lb) < 0.05 * lb  # the step's bf16 loss is close to the fp32 value
    # "The images look the same": the seed's optimization is chaotic (an imperceptible change of
    # the start, 1e-3 = a quarter of a grey level, moves the result by several grey levels), so
    # the yardstick is that sensitivity: bf16 must not move the image more than it does.
    c = StyleTransfer(content_path, [style_path], cfg)
    with torch.no_grad():
        c._image.add_(1e-3 * torch.randn(c._image.shape, generator=torch.Generator().manual_seed(0))).clamp_(0, 1)
    list(c.run())
    moved_bf16 = float((a.image - b.image).abs().mean())
    moved_noise = float((a.image - c.image).abs().mean())
    changed = float((a.image - a.content).abs().mean())
    assert moved_bf16 < 1.5 * moved_noise
    assert moved_bf16 < 0.3 * changed


def test_fp16_path_runs_with_loss_scaling(content_path, style_path):
    cfg = get_preset("seed").replace(size=32, steps=3)  # fp16 convolutions are slow on most CPUs
    a = StyleTransfer(content_path, [style_path], cfg)
    b = StyleTransfer(content_path, [style_path], cfg.replace(precision="fp16"))
    list(a.run())
    list(b.run())
    assert b.fp32_fallback_steps == 0
    la, lb = a.evaluate()["total"], b.evaluate()["total"]
    assert abs(lb - la) <= 0.03 * la


def test_non_finite_16_bit_gradient_redoes_the_step_in_fp32(content_path, style_path):
    cfg = get_preset("seed").replace(size=32, steps=2, precision="fp16")
    st = StyleTransfer(content_path, [style_path], cfg)
    st._grad_scale = 2.0**20  # the seed-scale loss (~1e9) times 2^20 overflows fp16 in backward
    first = st.evaluate()["total"]
    list(st.run())
    assert st.fp32_fallback_steps >= 1
    assert st._grad_scale < 2.0**20
    assert st.evaluate()["total"] < first
    assert torch.isfinite(st.image).all()


# ----------------------------------------------------------------------------------------------
# L-BFGS


def test_lbfgs_minimizes_a_quadratic():
    torch.manual_seed(1)
    a = torch.randn(20, 20, dtype=torch.float64)
    h = a @ a.T + 0.5 * torch.eye(20, dtype=torch.float64)  # SPD
    b = torch.randn(20, dtype=torch.float64)
    x = torch.zeros(20, dtype=torch.float64, requires_grad=True)
    opt = LBFGS(x, history=20, first_step=0.1)

    def closure():
        x.grad = None
        loss = 0.5 * x @ h @ x - b @ x
        loss.backward()
        return loss, {"total": loss}

    for _ in range(60):
        opt.step(closure)
    torch.testing.assert_close(x.detach(), torch.linalg.solve(h, b), rtol=1e-5, atol=1e-6)
    assert opt.evaluations < 90  # about one evaluation per iteration


def test_clamp_inward_value_is_the_clamp_and_gradient_lets_pixels_back_in():
    from gafu.optimize.optimizers import clamp_inward

    x = torch.tensor([-0.5, -0.5, 0.0, 0.3, 1.0, 1.5, 1.5], requires_grad=True)
    y = clamp_inward(x)
    assert torch.equal(y.detach(), x.detach().clamp(0, 1))
    g = torch.tensor([1.0, -1.0, 2.0, 3.0, -4.0, 5.0, -6.0])
    y.backward(g)
    # inside and on the boundary: the clamp's gradient; outside: kept only where -grad points back inside
    assert x.grad.tolist() == [0.0, -1.0, 2.0, 3.0, -4.0, 5.0, 0.0]


@pytest.mark.parametrize("inward", [False, True])
def test_lbfgs_brings_pixels_pushed_outside_the_box_back(inward):
    """An image-like problem (400 pixels, neighbours coupled, targets inside [0, 1]) started with every
    tenth pixel outside the box: with the plain clamp those stay frozen at the boundary."""
    from gafu.optimize.optimizers import clamp_inward

    g = torch.Generator().manual_seed(0)
    n = 400
    target = 0.1 + 0.8 * torch.rand(n, generator=g)
    a = torch.eye(n) + 0.3 * (torch.diag(torch.ones(n - 1), 1) + torch.diag(torch.ones(n - 1), -1))
    x0 = target + 0.05 * torch.randn(n, generator=g)
    outside = torch.arange(0, n, 10)
    x0[outside] = torch.where(outside % 20 == 0, 1.3, -0.3)
    x = x0.clone().requires_grad_(True)
    opt = LBFGS(x, history=10, first_step=0.1)
    box = clamp_inward if inward else (lambda v: v.clamp(0.0, 1.0))

    def closure():
        x.grad = None
        r = box(x) - target
        loss = r @ a @ r
        loss.backward()
        return loss, {"total": loss}

    for _ in range(60):
        opt.step(closure)
    error = (x.detach().clamp(0, 1) - target).abs()
    if inward:
        assert float(error.max()) < 1e-4
        assert opt.evaluations < 90
    else:  # the plain clamp's zero gradient: the pixels started outside never come back
        assert float(error[outside].min()) > 0.1


def test_lbfgs_history_is_capped_by_memory():
    from gafu.lbfgs import history_for

    assert history_for(3 * 512 * 340, 30) == 30  # 512 px: 30 pairs are ~125 MB
    assert history_for(3 * 4096 * 2720, 30) == 3  # 4096 px: one pair is ~270 MB, keep the minimum
    assert history_for(3 * 1024 * 680, 30) == 16  # 256 MB / (2 x 8.4 MB)
    assert history_for(3 * 2048 * 1360, 30) == 4
    assert history_for(100, 5) == 5


def test_lbfgs_in_style_transfer_beats_adam_at_equal_steps(content_path, style_path):
    cfg = get_preset("seed").replace(size=48, steps=12)
    adam = StyleTransfer(content_path, [style_path], cfg)
    lbfgs = StyleTransfer(content_path, [style_path], cfg.replace(optimizer="lbfgs"))
    list(adam.run())
    its = list(lbfgs.run())
    assert lbfgs.evaluate()["total"] < 0.8 * adam.evaluate()["total"]
    assert its[0].loss > its[-1].loss
    img = lbfgs.image
    assert img.min() >= 0 and img.max() <= 1
    assert lbfgs._lbfgs.evaluations <= 12 + 6


def test_fast_preset_runs_on_an_image_already_at_its_size(tmp_path, content_path, style_path):
    """Regression: an image whose long side already equals --size is not resized, and its tensor is
    a permuted (non-contiguous) view of PIL's HWC array; L-BFGS's flat view of it used to fail."""
    from PIL import Image

    with Image.open(content_path) as im:
        im.convert("RGB").resize((48, 32)).save(tmp_path / "c48.png")
    cfg = get_preset("fast").replace(size=48, steps=3, stop_tol=0.0)
    st = StyleTransfer(tmp_path / "c48.png", [style_path], cfg)
    assert tuple(st.content.shape[-2:]) == (32, 48) and st._image.is_contiguous()
    its = list(st.run())
    assert len(its) == 3 and its[-1].loss < its[0].loss
    # a tensor given as a permuted HWC view (content and start image) is also fine
    hwc = torch.rand(32, 48, 3)
    st = StyleTransfer(hwc.permute(2, 0, 1), [style_path], cfg, init_image=hwc.permute(2, 0, 1))
    assert len(list(st.run())) == 3
    with pytest.raises(ValueError, match="contiguous"):
        LBFGS(torch.zeros(4, 3).t().requires_grad_(True))


# ----------------------------------------------------------------------------------------------
# Coarse-to-fine and early stop


def test_coarse_to_fine_stages(content_path, style_path):
    cfg = get_preset("seed").replace(size=72, steps=4, scales=(0.45, 0.7), scale_steps=(3, 2), precision="bf16")
    st = StyleTransfer(content_path, [style_path], cfg)
    start = st.evaluate()["total"]
    with pytest.raises(GafuError, match="short side"):
        next(StyleTransfer(content_path, [style_path], cfg.replace(scales=(0.2, 0.7))).run())
    its = list(st.run(image_every=2))
    assert [it.step for it in its] == list(range(1, 10))
    assert all(it.steps == 9 for it in its)
    full = tuple(st.content.shape[-2:])
    assert its[0].shape[0] < its[3].shape[0] < full[0] and its[5].shape == full
    for it in its:
        if it.image is not None:
            assert tuple(it.image.shape[-2:]) == full
    assert its[1].image is not None and its[2].image is None and its[-1].image is not None
    assert st.steps_done == 9
    assert st.evaluate()["total"] < 0.5 * start
    # a second run() continues at full size only
    more = list(st.run(steps=2))
    assert [it.step for it in more] == [1, 2] and more[0].shape == full


def test_early_stop_when_the_loss_stalls(content_path, style_path):
    cfg = get_preset("seed").replace(size=32, steps=30, stop_tol=0.9, stop_window=2)
    st = StyleTransfer(content_path, [style_path], cfg)
    its = list(st.run())
    assert 3 <= len(its) < 30
    assert its[-1].image is not None
    # stop_tol 0 (the seed) never stops early
    assert len(list(StyleTransfer(content_path, [style_path], cfg.replace(stop_tol=0.0, steps=4)).run())) == 4


# ----------------------------------------------------------------------------------------------
# Config, allocator, CLI


def test_config_validation():
    with pytest.raises(GafuError, match="did you mean 'bf16'"):
        StyleConfig(precision="bf61")
    with pytest.raises(GafuError, match="did you mean 'lbfgs'"):
        StyleConfig(optimizer="lbgfs")
    with pytest.raises(GafuError, match="scale_steps"):
        StyleConfig(scales=(0.25, 0.5), scale_steps=(10,))
    with pytest.raises(GafuError, match="fractions"):
        StyleConfig(scales=(256,), scale_steps=(10,))
    with pytest.raises(GafuError, match="stop_tol"):
        StyleConfig(stop_tol=-1.0)
    assert StyleConfig(scales=[0.5], scale_steps=[5]).scales == (0.5,)


def test_auto_precision_is_bf16_only_where_native(content_path, style_path):
    from gafu.speed import cpu_has_native_bf16, resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert resolve_precision("fp16", cpu) == "fp16" and resolve_precision("fp32", cpu) == "fp32"
    st = StyleTransfer(content_path, [style_path], get_preset("seed").replace(size=32, steps=0, precision="auto"))
    assert st.precision == resolve_precision("auto", cpu)


def test_keep_freed_memory_is_reentrant():
    with keep_freed_memory() as outer:
        with keep_freed_memory() as inner:
            x = torch.empty(64 * 1024 * 1024, dtype=torch.uint8)
            del x
        assert inner == outer
    if sys.platform.startswith("linux"):
        assert outer  # glibc
    with keep_freed_memory(enabled=False) as off:
        assert off is False


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "gafu", "stylize", *args], capture_output=True, text=True, cwd=cwd)


def test_cli_speed_flags(tmp_path, content_path, style_path):
    import json

    out = tmp_path / "out.png"
    r = _cli(str(content_path), str(style_path), "-o", str(out), "--size", "48", "--steps", "3",
             "--precision", "bf16", "--optimizer", "lbfgs", "--scales", "0.7", "--scale-steps", "2", "--json",
             cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["settings"]["precision"] == "bf16" and summary["settings"]["scales"] == [0.7]
    assert summary["steps"] == 5 and out.exists()
    bad = _cli(str(content_path), str(style_path), "-o", str(tmp_path / "x.png"), "--scales", "0.7,0.8",
               "--scale-steps", "2", cwd=tmp_path)
    assert bad.returncode == 2 and "scale_steps" in bad.stderr and "Traceback" not in bad.stderr
    bad = _cli(str(content_path), str(style_path), "-o", str(tmp_path / "x.png"), "--precision", "fp8", cwd=tmp_path)
    assert bad.returncode == 2
    bad = _cli(str(content_path), str(style_path), "-o", str(tmp_path / "x.png"), "--lr", "0.1", cwd=tmp_path)
    assert bad.returncode == 2 and "--optimizer adam" in bad.stderr and "Traceback" not in bad.stderr


def test_fast_preset_is_the_cli_default_and_seed_stays_available(tmp_path, content_path, style_path):
    import argparse

    from gafu.cli import stylize

    parser = argparse.ArgumentParser()
    stylize.register(parser.add_subparsers())
    args = parser.parse_args(["stylize", str(content_path), str(style_path), "-o", "x.png"])
    assert args.preset == "fast"
    assert stylize.build_config(args) == get_preset("fast")
    args = parser.parse_args(["stylize", str(content_path), str(style_path), "-o", "x.png", "--preset", "seed"])
    assert stylize.build_config(args) == get_preset("seed") == StyleConfig()
    fast = get_preset("fast")
    assert (fast.optimizer, fast.precision, fast.size, fast.resize) == ("lbfgs", "auto", 512, "seed")
    # the library's one-call API has the same default
    import inspect

    import gafu

    assert inspect.signature(gafu.stylize).parameters["preset"].default == "fast"
    # the loss it minimizes is the seed's
    for k in ("content_layers", "style_layers", "style_weight", "content_weight", "tv_weight", "pooling", "init"):
        assert getattr(fast, k) == getattr(StyleConfig(), k)


# ----------------------------------------------------------------------------------------------
# CUDA (skipped without a CUDA device)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_reduced_precision_matches_cpu_fp32(content_path, style_path, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("no bf16 on this CUDA device")
    cfg = get_preset("seed").replace(size=96, steps=30)
    cpu = StyleTransfer(content_path, [style_path], cfg)
    gpu = StyleTransfer(content_path, [style_path], cfg.replace(precision=precision), device="cuda")
    list(cpu.run())
    list(gpu.run())
    assert gpu.fp32_fallback_steps <= 1
    la, lg = cpu.evaluate()["total"], gpu.evaluate()["total"]
    assert abs(lg - la) <= 0.02 * la
    assert gpu._lowp_extractor(precision).convs["conv1_1"].weight.is_cuda


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fast_preset_lbfgs_multiscale(content_path, style_path):
    cfg = get_preset("fast").replace(size=96, steps=20, scales=(0.5,), scale_steps=(10,), stop_tol=0.0)
    st = StyleTransfer(content_path, [style_path], cfg, device="cuda")
    start = st.evaluate()["total"]
    its = list(st.run())
    assert len(its) == 30 and st.evaluate()["total"] < 0.2 * start


def _record_precisions(st):
    seen = []
    original = st.loss_terms

    def spy(image, *, precision="fp32"):
        seen.append(precision)
        return original(image, precision=precision)

    st.loss_terms = spy
    return seen


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_polish_steps_run_last_in_fp32(content_path, style_path, optimizer):
    cfg = get_preset("seed").replace(size=32, steps=5, precision="bf16", polish_steps=2, optimizer=optimizer)
    st = StyleTransfer(content_path, [style_path], cfg)
    seen = _record_precisions(st)
    its = list(st.run())
    assert len(its) == 5
    first = seen.index("fp32")
    assert first >= 3 and set(seen[:first]) == {"bf16"} and set(seen[first:]) == {"fp32"}
    assert its[-1].image is not None


def test_early_stop_goes_to_the_polish_steps(content_path, style_path):
    cfg = get_preset("seed").replace(size=32, steps=40, precision="bf16", polish_steps=2, stop_tol=0.9, stop_window=2)
    st = StyleTransfer(content_path, [style_path], cfg)
    seen = _record_precisions(st)
    its = list(st.run())
    assert len(its) < 40 and seen[-2:] == ["fp32", "fp32"] and seen.count("fp32") == 2


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_a_16bit_stall_goes_on_in_fp32_until_fp32_stalls(content_path, style_path, optimizer):
    # stop_tol 0.9 over 2 steps: every window "stalls", so the run switches after 3 bf16 steps and
    # stops after 3 fp32 steps (the window starts again in fp32).
    cfg = get_preset("seed").replace(size=32, steps=40, precision="bf16", stop_tol=0.9, stop_window=2,
                                     optimizer=optimizer, on_stall="fp32")
    st = StyleTransfer(content_path, [style_path], cfg)
    seen = _record_precisions(st)
    its = list(st.run())
    first = seen.index("fp32")
    assert set(seen[:first]) == {"bf16"} and set(seen[first:]) == {"fp32"}
    assert len(its) == 6 and st.fp32_from_step == 4 and st.stop_reason == "stalled"
    assert "bf16 until step 3, when its loss stalled, then fp32" in st.stop_summary()
    assert st.result().info["fp32_from_step"] == 4
    # on_stall='stop' (the earlier rule) ends at the first stall, in bf16
    st = StyleTransfer(content_path, [style_path], cfg.replace(on_stall="stop"))
    seen = _record_precisions(st)
    assert len(list(st.run())) == 3 and set(seen) == {"bf16"} and st.fp32_from_step is None


def test_lbfgs_flags_an_iteration_that_found_no_decrease():
    x = torch.zeros(3, requires_grad=True)
    calls = []

    def closure():  # every trial point is worse than the start: the line search runs out of backtracks
        calls.append(1)
        x.grad = torch.ones(3)
        loss = torch.tensor(float(len(calls)))
        return loss, {"total": loss}

    opt = LBFGS(x, max_backtracks=3)
    opt.step(closure)
    assert opt.last_failed and torch.equal(x.detach(), torch.zeros(3)) and opt.evaluations == 1 + 4


def test_a_failed_16bit_line_search_switches_to_fp32_at_once(content_path, style_path, monkeypatch):
    from gafu.optimize.optimizers import LBFGS as LoopLBFGS

    step = LoopLBFGS.step

    def failing_third(self, closure):  # the 3rd iteration ends as one that found no decrease does
        terms = step(self, closure)
        if self.evaluations >= 3 and not getattr(self, "_failed_once", False):
            self._failed_once = self.last_failed = True
        return terms

    monkeypatch.setattr(LoopLBFGS, "step", failing_third)
    # stop_tol 1e-12: the 20-step stall rule never fires in these 8 steps; only the failed search can switch
    cfg = get_preset("fast").replace(size=32, steps=8, precision="bf16", stop_tol=1e-12)
    st = StyleTransfer(content_path, [style_path], cfg)
    seen = _record_precisions(st)
    list(st.run())
    k = st.fp32_from_step
    assert k is not None and 2 <= k <= 4 and st.steps_done == 8
    assert set(seen[: seen.index("fp32")]) == {"bf16"} and set(seen[seen.index("fp32"):]) == {"fp32"}
    assert "when its loss stalled, then fp32" in st.stop_summary()
    # on_stall='stop' keeps the earlier rule: a failed search alone neither stops nor switches
    st = StyleTransfer(content_path, [style_path], cfg.replace(on_stall="stop"))
    seen = _record_precisions(st)
    list(st.run())
    assert st.fp32_from_step is None and set(seen) == {"bf16"} and st.steps_done == 8


def test_no_fp32_steps_where_fp32_would_not_fit_the_memory_budget(content_path, style_path):
    from gafu.optimize import memory

    cfg = get_preset("seed").replace(size=32, steps=40, precision="bf16", stop_tol=0.9, stop_window=2,
                                     optimizer="lbfgs", on_stall="fp32")
    shape = StyleTransfer(content_path, [style_path], cfg.replace(steps=0)).content.shape[-2:]
    bf16, fp32 = (memory.estimate_peak_mb(*shape, precision=p) for p in ("bf16", "fp32"))
    assert bf16 < fp32
    st = StyleTransfer(content_path, [style_path], cfg, max_memory=(bf16 + fp32) / 2)  # bf16 fits whole, fp32 not
    seen = _record_precisions(st)
    assert len(list(st.run())) == 3 and set(seen) == {"bf16"} and st.fp32_from_step is None
    assert st.stop_reason == "stalled" and st._tiled is None
    st = StyleTransfer(content_path, [style_path], cfg, max_memory=fp32 + 1)  # both fit: it switches
    list(st.run())
    assert st.fp32_from_step == 4


def test_on_stall_is_checked():
    with pytest.raises(GafuError, match="on_stall"):
        StyleConfig(on_stall="never")
