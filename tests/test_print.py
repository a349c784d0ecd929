"""Print sizes (gafu.optimize.tiled): tiled optimization in bounded memory, its tile maths, the
memory plan and its one-line refusal, --max-memory, and a small tiled run against an untiled one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gafu.config import get_preset
from gafu.errors import GafuError
from gafu.optimize import StyleTransfer
from gafu.optimize import memory
from gafu.optimize.tiled import (PHASE, Eta, TiledObjective, boundaries, grid_offset, print_schedule, seam_ratio,
                                 stage_shapes, tile_shape)

SHAPES = ((300, 451), (1365, 2048), (2731, 4096))


# -- tile maths ----------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES)
def test_shifted_grids_cover_everything_with_weights_summing_to_one(shape):
    obj = TiledObjective(shape, tile=max(64, max(shape) // 3) // PHASE * PHASE)
    for k in range(6):
        plan = obj.plan(k)
        total = plan.weight_sum()
        acc = np.zeros(shape)
        for t in plan:
            assert t.y % PHASE == 0 and t.x % PHASE == 0  # the pooling phase: cells align with the image's
            assert t.height <= obj.tile and t.width <= obj.tile
            acc[t.slices] += plan.normalized_weight(t, total)
        np.testing.assert_allclose(acc, 1.0, atol=1e-12)  # every pixel covered, weights sum to 1


def test_weights_sum_to_one_at_every_layer_resolution():
    shape = (200, 330)
    obj = TiledObjective(shape, tile=128)
    plan = obj.plan(3)
    total = plan.weight_sum()
    for s in (2, 4, 8, 16):
        acc = torch.zeros(shape[0] // s, shape[1] // s, dtype=torch.float64)
        for t in plan:
            w = torch.from_numpy(plan.normalized_weight(t, total))[None, None]
            m = F.avg_pool2d(w, s)[0, 0]
            acc[t.y // s: t.y // s + m.shape[0], t.x // s: t.x // s + m.shape[1]] += m
        torch.testing.assert_close(acc, torch.ones_like(acc))


def test_the_grid_moves_between_evaluations():
    tile = 512
    offsets = [grid_offset(k, tile) for k in range(12)]
    assert offsets[0] == (0, 0)
    assert len(set(offsets)) == 12  # no two evaluations share a grid
    assert all(o % PHASE == 0 and 0 <= o < tile for pair in offsets for o in pair)
    obj = TiledObjective((1365, 2048), tile)
    rows = [boundaries([obj.plan(k)])[0] for k in range(4)]
    cols = [boundaries([obj.plan(k)])[1] for k in range(4)]
    for a, b in zip(cols, cols[1:]):
        assert len(a & b) <= len(a) // 4  # (nearly) every vertical boundary moved
    assert any(a != b for a, b in zip(rows, rows[1:]))


def _area(plan) -> int:
    return sum(t.height * t.width for t in plan)


@pytest.mark.parametrize("shape", SHAPES + ((106, 160),))
def test_budget_tiles_cover_everything_within_the_pixels_planned(shape):
    """Tiles the memory plan sized are shaped freely (rect): never more pixels than the plan's
    min(tile, H) x min(tile, W), every pixel covered with weights summing to 1 at every layer
    resolution, starts on the pooling phase, the grid moving, no tile thinner than the overlap."""
    tile = max(96, max(shape) // 3) // PHASE * PHASE
    obj = TiledObjective(shape, tile, min(128, tile // 4), rect=True)
    th, tw = obj.tile_shape
    assert th * tw <= min(tile, shape[0]) * min(tile, shape[1])
    grids = set()
    for k in range(6):
        plan = obj.plan(k)
        total = plan.weight_sum()
        grids.add((plan.ys, plan.xs))
        for s in (1, 2, 4, 8, 16):
            acc = torch.zeros(shape[0] // s, shape[1] // s, dtype=torch.float64)
            for t in plan:
                assert t.y % PHASE == 0 and t.x % PHASE == 0
                assert t.height <= th and t.width <= tw and min(t.height, t.width) > plan.overlap
                w = torch.from_numpy(plan.normalized_weight(t, total))[None, None]
                m = F.avg_pool2d(w, s)[0, 0] if s > 1 else w[0, 0]
                acc[t.y // s: t.y // s + m.shape[0], t.x // s: t.x // s + m.shape[1]] += m
            torch.testing.assert_close(acc, torch.ones_like(acc))
    assert len(grids) > 1  # the seams move


def test_budget_tiles_repeat_less_work_than_squares():
    # 2048x1362 in 1056 px of budget: full-height strips, fewer pixels computed per pass than squares.
    shape = (1362, 2048)
    assert tile_shape(shape, 1056) == (1362, 816)
    for shape, tile in (((1362, 2048), 1056), ((2725, 4096), 688), ((5448, 8192), 912)):
        rect, square = TiledObjective(shape, tile, rect=True), TiledObjective(shape, tile)
        a = sum(_area(rect.plan(k)) for k in range(8))
        b = sum(_area(square.plan(k)) for k in range(8))
        assert a < 0.95 * b, (shape, a / b)
        assert max(t.height * t.width for k in range(8) for t in rect.plan(k)) <= tile * tile


def test_an_axis_one_tile_covers_never_splits():
    obj = TiledObjective((1362, 2048), 1056, rect=True)  # strips as tall as the image
    for k in range(8):
        plan = obj.plan(k)
        assert plan.ys == ((0, 1362),)
        assert boundaries([plan])[0] == set()  # no horizontal seam at all


def test_seam_ratio_finds_a_seam_and_nothing_else():
    rng = np.random.default_rng(0)
    img = rng.random((96, 128, 3)) * 0.1
    assert seam_ratio(img, {48}, {64}) == pytest.approx(1.0, abs=0.15)
    img[:, 64:] += 0.3  # a step at column 64
    assert seam_ratio(img, {48}, {64}) > 2.0


# -- memory plan ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text,mb", [("4GB", 4096), ("4096MB", 4096), ("4G", 4096), ("512M", 512),
                                     ("1.5 GiB", 1536), ("2t", 2 * 1024**2)])
def test_memory_sizes_parse(text, mb):
    assert memory.parse_size_mb(text) == pytest.approx(mb)


@pytest.mark.parametrize("text", ["4", "four GB", "-1GB", "0GB", "4QB", ""])
def test_bad_memory_sizes_are_refused(text):
    with pytest.raises(GafuError, match="memory size such as 4GB"):
        memory.parse_size_mb(text)


def test_plan_whole_tiled_or_refused():
    kw = dict(precision="bf16", optimizer="lbfgs", lbfgs_history=30)
    assert memory.plan_memory((1365, 2048), budget_mb=20000, **kw) is None  # fits whole
    tile = memory.plan_memory((2731, 4096), budget_mb=4096, **kw)
    assert tile is not None and tile % 16 == 0 and tile >= memory.MIN_TILE
    assert memory.estimate_tiled_mb(2731, 4096, tile, **kw) <= 4096
    assert memory.estimate_tiled_mb(2731, 4096, tile + 64, **kw) > 4096  # the largest tile that fits
    with pytest.raises(GafuError) as exc:
        memory.plan_memory((5461, 8192), budget_mb=2048, **kw)
    msg = str(exc.value)
    assert "\n" not in msg and "budget (max_memory) is 2.0 GB" in msg
    fits = int(msg.rsplit("size=", 1)[1].rstrip(")"))
    h, w = round(5461 * fits / 8192), fits
    assert memory.estimate_tiled_mb(h, w, memory.MIN_TILE, **kw) <= 2048 or memory.estimate_peak_mb(h, w, precision="bf16") <= 2048
    # masks/regions are not tiled: the whole image must fit
    with pytest.raises(GafuError, match="largest size that fits"):
        memory.plan_memory((2731, 4096), budget_mb=4096, masked=True, **kw)


def test_cli_refuses_in_one_line_before_any_work(tmp_path, capsys, content_path, style_path):
    from gafu.cli import main

    out = tmp_path / "out.png"
    rc = main(["stylize", str(content_path), str(style_path), "-o", str(out), "--size", "8192", "--max-memory", "1GB"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "--max-memory" in err and "largest --size that fits is about" in err and "--size=" in err
    assert not out.exists()
    rc = main(["stylize", str(content_path), str(style_path), "-o", str(out), "--max-memory", "lots"])
    assert rc == 2 and "memory size such as 4GB" in capsys.readouterr().err


def test_print_schedule_starts_whole_at_a_size_that_fits():
    cfg = get_preset("fast").replace(size=4096)
    budget = memory.estimate_peak_mb(683, 1024, precision="bf16") + 1
    sched = print_schedule(cfg, (2731, 4096), budget, precision="bf16")
    assert sched.scales == (0.25, 0.5) and sched.scale_steps == (1000, 50) and sched.steps == 50
    stages = stage_shapes(sched, (2731, 4096))
    assert [s for s, _ in stages] == [(683, 1024), (1366, 2048), (2731, 4096)]
    assert print_schedule(cfg.replace(size=512), (341, 512), budget, precision="bf16") == cfg.replace(size=512)


def test_eta_counts_the_remaining_stages():
    eta = Eta([((100, 100), 10), ((200, 200), 5)])
    left = eta.update(1, 1.0, (100, 100), False)  # 1 s per 0.01 MP step
    assert left == pytest.approx(9 * 1.0 + 5 * 4.0)
    for step in range(2, 11):
        eta.update(step, float(step), (100, 100), False)
    left = eta.update(11, 10.0 + 8.0, (200, 200), True)  # the first step at the larger scale: 8 s
    assert left == pytest.approx(4 * 8.0)


# -- a small tiled run ---------------------------------------------------------------------------
CFG = get_preset("seed").replace(size=160, steps=8, style_weight=1e5, content_weight=1e3, eps=1e-6)


def _pair(tiny_vgg, content_path, style_path, cfg):
    whole = StyleTransfer(content_path, [style_path], cfg, extractor=tiny_vgg)
    tiled = StyleTransfer(content_path, [style_path], cfg, extractor=tiny_vgg, tile=96)
    return whole, tiled


def test_tiled_loss_and_gradient_match_the_whole_image(tiny_vgg, content_path, style_path):
    whole, tiled = _pair(tiny_vgg, content_path, style_path, CFG)
    assert whole._tiled is None and tiled._tiled is not None and tiled._tiled.tiles_per_pass() > 1
    g = torch.Generator().manual_seed(1)
    x = (0.5 * whole._image.detach() + 0.5 * torch.rand(whole._image.shape, generator=g)).contiguous()
    ea, eb = whole.evaluate(x), tiled.evaluate(x)
    for k in ("style", "content", "total"):
        assert eb[k] == pytest.approx(ea[k], rel=0.03)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    whole._loss_and_grad(xa, precision="fp32")
    tiled._loss_and_grad(xb, precision="fp32")
    assert float((xa.grad - xb.grad).norm() / xa.grad.norm()) < 0.05
    assert tiled._tiled.evaluations == 2  # the grid moved between the evaluations


@pytest.mark.parametrize("rect", [False, True])
def test_gram_pass_last_tile_is_not_run_twice(tiny_vgg, content_path, style_path, rect):
    """The Gram pass keeps its last tile's graph for the gradient pass: one network call fewer per
    evaluation, the same loss and gradient as running that tile again."""
    _, tiled = _pair(tiny_vgg, content_path, style_path, CFG)
    shape = tuple(tiled.content.shape[-2:])
    tiled._tiled = TiledObjective(shape, 112 if rect else 96, 28 if rect else 24, rect=rect)
    calls = []

    class Counting:
        def __call__(self, image, layers):
            calls.append((tuple(image.shape[-2:]), tuple(layers)))
            return tiny_vgg(image, layers)

    tiled.extractor = Counting()
    g = torch.Generator().manual_seed(3)
    x = torch.rand(tiled._image.shape, generator=g)
    obj = tiled._tiled
    n = obj.tiles_per_pass()
    xa = x.clone().requires_grad_(True)
    terms = obj.loss_and_grad(tiled, xa, clamp=True, precision="fp32")
    assert len(calls) == 2 * n - 1  # n in the Gram pass, n - 1 in the gradient pass
    assert obj._kept is None  # the kept graph is gone with the pass
    # the same evaluation without keeping: a Gram pass, then every tile forward and backward
    obj.evaluations -= 1
    obj.offsets.pop()
    xb = x.clone().requires_grad_(True)
    _, obj._gram = obj._evaluate(tiled, xb.detach(), clamp=True, precision="fp32", grad=False, grams_only=True)
    ref, _ = obj._evaluate(tiled, xb, clamp=True, precision="fp32", grad=True)
    for k in ("style", "content", "total"):
        assert float(terms[k]) == pytest.approx(float(ref[k]), rel=1e-5)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-4, atol=1e-6 * float(xb.grad.abs().max()))


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_small_tiled_run_matches_an_untiled_one(tiny_vgg, content_path, style_path, optimizer):
    cfg = CFG.replace(optimizer=optimizer, lbfgs_history=10)
    whole, tiled = _pair(tiny_vgg, content_path, style_path, cfg)
    assert tiled.config.scales == (0.5,)  # the print schedule: whole at 80 px, then tiled at 160
    tiled.config = cfg  # compare the same steps at the same size
    start = whole.evaluate()["total"]
    for st in (whole, tiled):
        for _ in st.run():
            pass
    a, b = whole.evaluate()["total"], tiled.evaluate()["total"]
    assert a < 0.9 * start  # the run did something
    assert b == pytest.approx(a, rel=0.1)
    diff = (whole.image - tiled.image).abs().mean()
    assert float(diff) < 0.02
    rows, cols = boundaries(tiled._tiled.plans())
    assert seam_ratio(tiled.image, rows, cols) / seam_ratio(whole.image, rows, cols) == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_small_run_in_budget_shaped_tiles_matches_an_untiled_one(tiny_vgg, content_path, style_path, optimizer):
    cfg = CFG.replace(optimizer=optimizer, lbfgs_history=10)
    whole, tiled = _pair(tiny_vgg, content_path, style_path, cfg)
    tiled.config = cfg
    tiled._tiled = TiledObjective(tuple(tiled.content.shape[-2:]), 112, 28, rect=True)  # as the memory plan makes them
    assert tiled._tiled.tile_shape == (106, 112) and tiled._tiled.tiles_per_pass() > 1  # full-height strips
    start = whole.evaluate()["total"]
    curves = []
    for st in (whole, tiled):  # each step's image judged by the whole image's loss
        curves.append([whole.evaluate(st.image)["total"] for _ in st.run()])
    a, b = curves
    assert a[-1] < 0.9 * start
    ratios = [y / x for x, y in zip(a, b)]
    if optimizer == "adam":
        assert ratios[-1] == pytest.approx(1.0, rel=0.1)
        assert float((whole.image - tiled.image).abs().mean()) < 0.02
    else:  # L-BFGS tracks the untiled run step by step, and is never notably worse; its line
        # searches may part ways late (measured: steps 1-7 within 5 %, then 0.38 untiled, 0.17 tiled)
        assert all(r == pytest.approx(1.0, rel=0.1) for r in ratios[: len(ratios) // 2 + 1]), ratios
        assert max(ratios) < 1.1, ratios
    rows, cols = boundaries(tiled._tiled.plans())
    assert seam_ratio(tiled.image, rows, cols) / seam_ratio(whole.image, rows, cols) == pytest.approx(1.0, abs=0.1)


def test_tiles_refuse_masks(tiny_vgg, content_path, style_path):
    mask = torch.ones(1, 1, 106, 160)
    with pytest.raises(GafuError, match="needs about"):
        StyleTransfer(content_path, [style_path], CFG, extractor=tiny_vgg, mask=mask, max_memory=300)  # 160 px needs ~0.8 GB whole


def test_tiled_result_saves_as_16_bit_png_with_srgb_profile(tiny_vgg, content_path, style_path, tmp_path):
    from PIL import Image

    from gafu.image import save_image

    st = StyleTransfer(content_path, [style_path], CFG.replace(steps=1), extractor=tiny_vgg, tile=96)
    for _ in st.run():
        pass
    out = save_image(st.image, tmp_path / "print.png", bits=16)
    data = out.read_bytes()
    assert data[24] == 16 and b"iCCP" in data[:4096]  # 16 bits per channel, an ICC profile
    with Image.open(out) as im:
        assert im.size == (160, 106) and "icc_profile" in im.info
